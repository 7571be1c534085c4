"""Caps with clear errors: definition, run input, node output, event payload, request body.

Each answers with a status, a stable code and a JSON pointer, never a 500.
The node-output and event caps are enforced inside workers, so those tests
start their own worker with the cap in its environment.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from executions.models import NodeRun, RunEvent
from tests.support.factories import edge, http, make_workflow, node, transform, wait_run
from tests.support.servers import LocalServer
from tests.support.workers import ProcessGroup
from tests.test_flags import _only_our_workers, claim_queues  # noqa: F401 - autouse fixture: other workers step aside


def _error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.content
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return body["error"]


def _definition(n: int) -> dict[str, Any]:
    return {"nodes": [node(f"n{i}", "CALCULATOR", {"operation": "add", "a": i, "b": 1}) for i in range(n)], "edges": []}


def test_definition_size_cap(api: APIClient) -> None:
    small = _definition(2)
    big = _definition(40)
    with override_settings(ZYRA_MAX_DEFINITION_BYTES=len(json.dumps(small)) * 3):
        assert api.post("/api/workflows/", {"name": "ok", "definition": small}, format="json").status_code == 201
        err = _error(api.post("/api/workflows/", {"name": "big", "definition": big}, format="json"), 413)
        assert err["code"] == "definition_too_large"
        assert err["details"][0]["path"] == "/definition" and err["details"][0]["code"] == "definition_too_large"
        # The validate endpoint reports the same cap as a validation error.
        resp = api.post("/api/workflows/validate/", {"definition": big}, format="json")
        assert resp.status_code == 200 and resp.json()["valid"] is False
        assert [(e["path"], e["code"]) for e in resp.json()["errors"]] == [("/definition", "definition_too_large")]


def test_run_input_size_cap(api: APIClient, user: Any) -> None:
    wf = make_workflow(user, _definition(1))
    with override_settings(ZYRA_MAX_INPUT_BYTES=1000):
        err = _error(api.post(f"/api/workflows/{wf.id}/runs/", {"inputs": {"blob": "x" * 2000}}, format="json"), 413)
        assert err["code"] == "inputs_too_large"
        assert err["details"][0]["path"] == "/inputs"
        assert wf.runs.count() == 0  # nothing half-stored


def test_request_body_cap_is_413_in_the_error_shape(api: APIClient, user: Any) -> None:
    wf = make_workflow(user, _definition(1))
    body = json.dumps({"inputs": {"blob": "x" * 20_000}})
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10_000, ZYRA_MAX_INPUT_BYTES=10**6):
        # The runs endpoint (DRF's stock parser, which reads the stream without a cap).
        err = _error(api.post(f"/api/workflows/{wf.id}/runs/", body, content_type="application/json"), 413)
        assert err["code"] == "body_too_large" and err["details"] == [
            {"path": "", "code": "body_too_large", "message": "The request body is larger than 10000 bytes."}
        ]
        # Any other endpoint, and a form body (which Django would reject as a 400 HTML page).
        _error(api.post("/api/workflows/", body, content_type="application/json"), 413)
        _error(api.post("/admin/login/", {"username": "x" * 20_000, "password": "y"}), 413)
        # Under the cap everything works as before.
        assert api.post(f"/api/workflows/{wf.id}/runs/", {"inputs": {"a": 1}}, format="json").status_code == 202
    assert wf.runs.count() == 1


def test_bad_content_length_is_400(api: APIClient, db: Any) -> None:
    err = _error(api.post("/api/workflows/", "{}", content_type="application/json", CONTENT_LENGTH="lots"), 400)
    assert err["code"] == "invalid_content_length"


def test_webhooks_keep_their_own_cap(api: APIClient, db: Any) -> None:
    """/hooks/ is exempt from the global cap: an unknown token is a 404 whatever the body size."""
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10):
        resp = APIClient().post("/hooks/" + "t" * 32 + "/", json.dumps({"a": "b" * 100}), content_type="application/json")
    assert resp.status_code == 404


def test_node_output_cap_and_event_payload_cap(process_group: ProcessGroup, user: Any, server: LocalServer) -> None:
    """Inside a worker: an output over ZYRA_MAX_OUTPUT_BYTES fails the node; one over ZYRA_EVENT_OUTPUT_BYTES
    is stored whole but travels truncated in its event."""
    process_group.env_extra.update({"ZYRA_MAX_OUTPUT_BYTES": "3000", "ZYRA_EVENT_OUTPUT_BYTES": "200"})
    process_group.start_worker("caps", concurrency=4)
    claim_queues("caps")
    server.route("/mid", lambda req: (200, {"Content-Type": "application/json"}, json.dumps({"v": "m" * 1000}).encode()))
    server.route("/big", lambda req: (200, {"Content-Type": "application/json"}, json.dumps({"v": "b" * 6000}).encode()))
    wf = make_workflow(
        user,
        {
            "nodes": [node("start", "MANUAL"), http("mid", server.url("/mid")), http("big", server.url("/big"))],
            "edges": [edge("start", "mid"), edge("mid", "big")],
        },
    )
    from executions import services

    run = wait_run(services.run_start(workflow=wf, inputs={}, user=user).id, timeout=60)
    assert run.status == "failed"
    big = NodeRun.objects.get(run=run, node_id="big")
    assert big.status == "failed" and big.output is None
    assert big.error is not None and big.error["code"] == "output_too_large" and "cap is 3000" in big.error["message"]
    mid = NodeRun.objects.get(run=run, node_id="mid")
    assert mid.status == "succeeded" and mid.output is not None and len(mid.output["body"]["v"]) == 1000  # stored whole
    event = RunEvent.objects.get(run=run, type="node.succeeded", node_id="mid")
    out = event.data["output"]
    assert out["truncated"] is True and out["size"] > 1000 and len(out["preview"]) <= 100
    failed = RunEvent.objects.get(run=run, type="node.failed", node_id="big")
    assert failed.data["error"]["code"] == "output_too_large"
    # The API shows the node error with its code.
    detail = APIClient()
    detail.force_authenticate(user)
    nodes = {n["node_id"]: n for n in detail.get(f"/api/runs/{run.id}/").json()["nodes"]}
    assert nodes["big"]["error"]["code"] == "output_too_large"


# --------------------------------------------------------------------------- worker limits (docs/operations.md)


def test_worker_limits_are_configured() -> None:
    from django.conf import settings

    from zyra.celery import app

    assert app.conf.worker_max_tasks_per_child == settings.CELERY_WORKER_MAX_TASKS_PER_CHILD > 0
    assert app.conf.worker_max_memory_per_child == settings.CELERY_WORKER_MAX_MEMORY_PER_CHILD > 0
    assert app.conf.worker_prefetch_multiplier == 1 and app.conf.task_acks_late is True
    assert 0 < app.conf.task_soft_time_limit < app.conf.task_time_limit
    # Long waits never sit in the broker as ETAs: the visibility timeout is above any node timeout.
    assert cast(int, settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]) > settings.ZYRA_MAX_NODE_TIMEOUT_S


def test_prefork_worker_recycles_children_and_enforces_time_limits(process_group: ProcessGroup, user: Any) -> None:
    """A cpu-queue prefork worker started with the settings' environment: the pool reports the limits,
    and a child is replaced after CELERY_WORKER_MAX_TASKS_PER_CHILD tasks."""
    from zyra.celery import app

    process_group.env_extra.update(
        {"CELERY_WORKER_MAX_TASKS_PER_CHILD": "2", "CELERY_TASK_SOFT_TIME_LIMIT": "20", "CELERY_TASK_TIME_LIMIT": "25"}
    )
    process_group.start_worker("caps-cpu", queues="cpu,io,sweep", pool="prefork", concurrency=1)
    claim_queues("caps-cpu")
    name = None
    stats: dict[str, Any] = {}
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stats:
        replies = app.control.inspect(timeout=1.0).stats() or {}
        name, stats = next(((k, v) for k, v in replies.items() if k.startswith("caps-cpu@")), (None, {}))
    assert stats, "the prefork worker answered inspect stats"
    pool = stats["pool"]
    assert pool["max-tasks-per-child"] == 2 and pool["timeouts"] == [20, 25] and stats["prefetch_count"] == 1
    conf = app.control.inspect(destination=[name], timeout=2.0).conf()[name]
    # The worker's own view of the settings (namespaced names, as in zyra/settings/celery.py).
    assert conf["CELERY_WORKER_MAX_MEMORY_PER_CHILD"] == 512_000 and conf["CELERY_WORKER_MAX_TASKS_PER_CHILD"] == 2
    first_children = list(pool["processes"])
    # Five runs of one CPU node (at least one task each) through a single child: it must have been replaced.
    from executions import services

    wf = make_workflow(user, {"nodes": [transform("c")], "edges": []})
    runs = [services.run_start(workflow=wf, inputs={}, user=user) for _ in range(5)]
    for run in runs:
        run = wait_run(run.id, timeout=90)
        assert run.status == "succeeded"
    later = app.control.inspect(destination=[name], timeout=2.0).stats()[name]["pool"]["processes"]
    workers = set(NodeRun.objects.filter(run__workflow=wf).values_list("worker", flat=True))
    assert later and later != first_children, (first_children, later, workers)


def test_the_body_cap_runs_on_the_event_loop_under_asgi(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ASGI (Django's AsyncClient drives the real ASGI handler) the cap answers in both shapes and
    checks each request on the event loop's thread: a sync-only middleware first in the chain cost two
    thread hops more per request (to a thread for it, back to the loop for the rest of the chain)."""
    import asyncio
    import threading

    from django.test import AsyncClient

    from zyra import middleware

    threads: list[threading.Thread] = []
    real = middleware._refusal

    def spy(request: Any) -> Any:
        threads.append(threading.current_thread())
        return real(request)

    monkeypatch.setattr(middleware, "_refusal", spy)

    async def requests() -> tuple[Any, Any, Any, threading.Thread]:
        client = AsyncClient()
        big = await client.post("/api/workflows/", "x" * 20_000, content_type="application/json")
        bad = await client.post("/api/workflows/", "{}", content_type="application/json", CONTENT_LENGTH="lots")
        ok = await client.get("/api/no-such-endpoint/")
        return big, bad, ok, threading.current_thread()

    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10_000):
        big, bad, ok, loop_thread = asyncio.run(requests())
    assert _error(big, 413)["code"] == "body_too_large"
    assert _error(bad, 400)["code"] == "invalid_content_length"
    assert ok.status_code == 404  # under the cap: passed on to the rest of the chain
    assert threads == [loop_thread] * 3
