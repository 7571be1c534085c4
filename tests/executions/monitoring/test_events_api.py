"""GET /api/runs/{id}/events/?after=seq: cursor pagination by seq, same payloads, permissions, errors."""

from __future__ import annotations

from typing import Any

from executions.events import event_record
from tests.executions.monitoring.test_ws_auth import make_run


def _seed(run: Any, n: int) -> None:
    for i in range(n):
        event_record(run_id=run.id, type="node.started", node_id=f"n{i}", data={"status": "running", "i": i})


def test_pages_follow_the_seq_cursor(api: Any, user: Any) -> None:
    run = make_run(user)
    _seed(run, 12)
    resp = api.get(f"/api/runs/{run.id}/events/?limit=5")
    assert resp.status_code == 200
    body = resp.json()
    assert [e["seq"] for e in body["results"]] == [1, 2, 3, 4, 5]
    assert body["last_seq"] == 5 and body["after"] == 0 and body["run_status"] == "running"
    assert "after=5" in body["next"] and "limit=5" in body["next"]
    event = body["results"][0]
    assert event == {
        "seq": 1,
        "type": "node.started",
        "run_id": str(run.id),
        "workflow_id": str(run.workflow_id),
        "node_id": "n0",
        "ts": event["ts"],
        "data": {"status": "running", "i": 0, "progress": {"done": 0, "total": 1}},
    }
    assert event["ts"].endswith("Z")

    body = api.get(f"/api/runs/{run.id}/events/?after=10&limit=5").json()
    assert [e["seq"] for e in body["results"]] == [11, 12]
    assert body["next"] is None and body["last_seq"] == 12

    body = api.get(f"/api/runs/{run.id}/events/?after=12").json()
    assert body["results"] == [] and body["last_seq"] == 12 and body["next"] is None


def test_other_users_run_is_404_staff_sees_it_anonymous_is_401(api: Any, other_api: Any, staff_api: Any, anon_api: Any, user: Any) -> None:
    run = make_run(user)
    _seed(run, 2)
    resp = other_api.get(f"/api/runs/{run.id}/events/")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    assert staff_api.get(f"/api/runs/{run.id}/events/").json()["last_seq"] == 2
    assert anon_api.get(f"/api/runs/{run.id}/events/").status_code == 401


def test_bad_cursor_is_a_clear_400(api: Any, user: Any) -> None:
    run = make_run(user)
    for query, name in (("after=-1", "after"), ("after=x", "after"), ("limit=0", "limit"), ("limit=100000", "limit")):
        resp = api.get(f"/api/runs/{run.id}/events/?{query}")
        assert resp.status_code == 400, query
        err = resp.json()["error"]
        assert err["code"] == "validation_error"
        assert err["details"][0]["path"] == f"/{name}"
