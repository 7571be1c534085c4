"""The runs API under malformed, oversized and hostile input, and object-level security."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from executions import services
from executions.models import Run
from tests.support.factories import edge, make_workflow, node


@pytest.fixture
def wf(user: Any) -> Any:
    return make_workflow(user, {"nodes": [node("start", "MANUAL")], "edges": []})


def _error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.content
    body = resp.json()["error"]
    assert set(body) == {"code", "message", "details"}
    return body


@pytest.mark.parametrize(
    "body,content_type",
    [
        ("not json", "application/json"),
        ("[1, 2, 3]", "application/json"),
        ('{"inputs": ', "application/json"),
        ('{"inputs": "\\u0000"}', "application/json"),
        ('{"inputs": 1e999}', "application/json"),
        ("inputs=1", "application/x-www-form-urlencoded"),
    ],
)
def test_start_with_a_bad_body_is_a_4xx_and_starts_nothing(api: Any, wf: Any, body: str, content_type: str) -> None:
    resp = api.post(f"/api/workflows/{wf.id}/runs/", body, content_type=content_type)
    assert 400 <= resp.status_code < 500, resp.content
    assert "error" in resp.json()
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    "payload,pointer",
    [
        ({"inputs": [1, 2]}, "/inputs"),
        ({"inputs": "x"}, "/inputs"),
        ({"inputs": {}, "idempotency_key": ""}, "/idempotency_key"),
        ({"inputs": {}, "idempotency_key": "k" * 201}, "/idempotency_key"),
        ({"inputs": {}, "idempotency_key": 12}, "/idempotency_key"),
    ],
)
def test_start_with_bad_fields_names_the_field(api: Any, wf: Any, payload: dict[str, Any], pointer: str) -> None:
    body = _error(api.post(f"/api/workflows/{wf.id}/runs/", payload, format="json"), 400)
    assert any(d["path"] == pointer for d in body["details"]), body
    assert Run.objects.count() == 0


def test_oversized_inputs_are_refused(api: Any, wf: Any, settings: Any) -> None:
    settings.ZYRA_MAX_INPUT_BYTES = 1000
    body = _error(api.post(f"/api/workflows/{wf.id}/runs/", {"inputs": {"blob": "x" * 5000}}, format="json"), 413)
    assert body["code"] == "inputs_too_large" and body["details"][0]["path"] == "/inputs"
    assert Run.objects.count() == 0


def test_deeply_nested_inputs_are_refused(api: Any, wf: Any) -> None:
    deep: Any = {}
    for _ in range(200):
        deep = {"a": deep}
    resp = api.post(f"/api/workflows/{wf.id}/runs/", {"inputs": deep}, format="json")
    assert 400 <= resp.status_code < 500
    assert Run.objects.count() == 0


def test_list_filters_are_validated(api: Any, user: Any, wf: Any) -> None:
    body = _error(api.get("/api/runs/?status=bogus&workflow=not-a-uuid"), 400)
    assert {d["path"] for d in body["details"]} == {"/query/status", "/query/workflow"}
    _error(api.get("/api/runs/?page=999"), 404)  # past the last page, in the one error shape


def test_other_users_runs_are_404_everywhere(api: Any, other_api: Any, user: Any, wf: Any, anon_api: Any) -> None:
    run = services.run_start(workflow=wf, inputs={}, user=user)
    for method, path in [
        ("get", f"/api/runs/{run.id}/"),
        ("get", f"/api/runs/{run.id}/events/"),
        ("post", f"/api/runs/{run.id}/cancel/"),
        ("post", f"/api/runs/{run.id}/resume/"),
        ("post", f"/api/runs/{run.id}/retry/"),
        ("post", f"/api/workflows/{wf.id}/runs/"),
    ]:
        assert getattr(other_api, method)(path, {}, format="json").status_code == 404, path
        assert getattr(anon_api, method)(path, {}, format="json").status_code == 401, path
    assert other_api.get("/api/runs/").json()["count"] == 0
    assert api.get("/api/runs/").json()["count"] == 1
    missing = uuid.uuid4()
    _error(api.get(f"/api/runs/{missing}/"), 404)
    _error(api.post(f"/api/workflows/{missing}/runs/", {}, format="json"), 404)


def test_cancel_twice_is_a_conflict(api: Any, user: Any) -> None:
    # (A lone MANUAL node would finish in the starting transaction: give the run a node that waits for a worker.)
    waits = make_workflow(
        user, {"nodes": [node("start", "MANUAL"), node("later", "DELAY", {"seconds": 60})], "edges": [edge("start", "later")]}
    )
    run = services.run_start(workflow=waits, inputs={}, user=user)
    first = api.post(f"/api/runs/{run.id}/cancel/")
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    assert _error(api.post(f"/api/runs/{run.id}/cancel/"), 409)["code"] == "run_finished"


def test_archived_workflow_cannot_start(api: Any, wf: Any) -> None:
    assert api.delete(f"/api/workflows/{wf.id}/").status_code == 204
    assert _error(api.post(f"/api/workflows/{wf.id}/runs/", {}, format="json"), 409)["code"] == "workflow_archived"
    assert Run.objects.count() == 0


def test_start_and_action_answer_with_the_run_summary(api: Any, user: Any) -> None:
    """The one summary serializer per process (executions.serializers.run_summary) answers exactly as a
    fresh RunSummarySerializer would, for a start and then for an action on the same run."""
    import json

    from rest_framework.renderers import JSONRenderer

    from executions.serializers import RunSummarySerializer

    def fresh(run_id: str) -> Any:
        run = Run.objects.select_related("version").get(id=run_id)
        return json.loads(JSONRenderer().render(RunSummarySerializer(run).data))

    waits = make_workflow(
        user, {"nodes": [node("start", "MANUAL"), node("later", "DELAY", {"seconds": 60})], "edges": [edge("start", "later")]}
    )
    started = api.post(f"/api/workflows/{waits.id}/runs/", {"inputs": {"a": 1}, "idempotency_key": "k-1"}, format="json")
    assert started.status_code == 202, started.content
    body = started.json()
    assert body == fresh(body["id"])
    assert (body["status"], body["progress"], body["version"], body["idempotency_key"]) == ("running", {"done": 1, "total": 2}, 1, "k-1")
    cancelled = api.post(f"/api/runs/{body['id']}/cancel/")
    assert cancelled.status_code == 200
    assert cancelled.json() == fresh(body["id"])
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["finished_at"] is not None
