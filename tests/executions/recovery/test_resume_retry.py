"""Resume and retry-from-failed: succeeded nodes keep their outputs and never run again.

The counting server proves what ran; the event log and the attempt history
show the reopening.
"""

from __future__ import annotations

import json
import time
from typing import Any

from executions import services
from executions.models import NodeRun, Run
from tests.support.factories import edge, http, make_workflow, node, statuses, wait_run
from tests.support.servers import LocalServer, Request
from tests.support.workers import wait_until


def _history(run: Run, node_id: str) -> list[tuple[int, str, str | None]]:
    nr = NodeRun.objects.get(run=run, node_id=node_id)
    return [(a["attempt"], a["status"], (a.get("error") or {}).get("code")) for a in nr.attempts]


def _broken_then_fixed(server: LocalServer, path: str) -> dict[str, bool]:
    """``path`` answers 500 until ``state["fixed"]`` is set."""
    state = {"fixed": False}

    def responder(req: Request) -> tuple[int, dict[str, str], bytes]:
        status = 200 if state["fixed"] else 500
        return status, {"Content-Type": "application/json"}, json.dumps({"fixed": state["fixed"]}).encode()

    server.route(path, responder)
    return state


def _failing_stop(server: LocalServer) -> dict[str, Any]:
    # b has no retries and stops the run; d is a side branch that finishes before b is reached.
    server.slow("/a", 0.5)
    return {
        "nodes": [
            node("start", "MANUAL"),
            http("a", server.url("/a")),
            http("b", server.url("/b"), retry={"max_attempts": 1}),
            http("c", server.url("/c")),
            http("d", server.url("/d")),
        ],
        "edges": [edge("start", "a"), edge("a", "b"), edge("b", "c"), edge("start", "d")],
    }


def test_resume_a_failed_run_runs_only_what_did_not_succeed(worker: Any, user: Any, server: LocalServer) -> None:
    state = _broken_then_fixed(server, "/b")
    run = services.run_start(workflow=make_workflow(user, _failing_stop(server)), inputs={}, user=user)
    run = wait_run(run.id)
    assert run.status == "failed" and run.error["node_id"] == "b"
    assert statuses(run) == {"start": "succeeded", "a": "succeeded", "b": "failed", "c": "cancelled", "d": "succeeded"}
    a_output = NodeRun.objects.get(run=run, node_id="a").output

    state["fixed"] = True
    services.run_resume(run=run)
    run = wait_run(run.id)
    assert run.status == "succeeded", statuses(run)
    assert run.resumes == 1
    # Succeeded nodes were not executed again; the failed one and the one it blocked were.
    assert {p: server.count(p) for p in ["/a", "/b", "/c", "/d"]} == {"/a": 1, "/b": 2, "/c": 1, "/d": 1}
    assert NodeRun.objects.get(run=run, node_id="a").output == a_output
    assert _history(run, "b") == [(1, "failed", "http_5xx"), (2, "succeeded", None)]
    assert _history(run, "c") == [(1, "succeeded", None)]  # it never started before the failure
    assert _history(run, "a") == [(1, "succeeded", None)]
    resumed = run.events.get(type="run.resumed")
    assert resumed.data["mode"] == "resume" and resumed.data["kept"] == ["a", "d", "start"]
    after = list(run.events.filter(seq__gt=resumed.seq).values_list("type", "node_id", "data__attempt"))
    assert ("node.started", "b", 2) in after and ("node.succeeded", "b", 2) in after
    assert not any(nid in {"a", "d", "start"} for _, nid, _ in after if nid)
    assert [t for t, *_ in after][-1] == "run.succeeded"


def test_retry_from_failed_reruns_the_failed_branch_only(worker: Any, user: Any, server: LocalServer) -> None:
    state = _broken_then_fixed(server, "/x")
    d = {
        "nodes": [
            node("start", "MANUAL"),
            http("x", server.url("/x"), retry={"max_attempts": 1}, on_error="continue"),
            http("y", server.url("/y")),
            http("z", server.url("/z")),
            http("w", server.url("/w")),
        ],
        "edges": [edge("start", "x"), edge("x", "y"), edge("start", "z"), edge("z", "w")],
    }
    run = wait_run(services.run_start(workflow=make_workflow(user, d), inputs={}, user=user).id)
    assert run.status == "partially_succeeded"
    assert statuses(run) == {"start": "succeeded", "x": "failed", "y": "skipped", "z": "succeeded", "w": "succeeded"}

    state["fixed"] = True
    services.run_retry(run=run)
    run = wait_run(run.id)
    assert run.status == "succeeded", statuses(run)
    assert {p: server.count(p) for p in ["/x", "/y", "/z", "/w"]} == {"/x": 2, "/y": 1, "/z": 1, "/w": 1}
    assert _history(run, "x") == [(1, "failed", "http_5xx"), (2, "succeeded", None)]
    assert run.events.get(type="run.resumed").data["mode"] == "retry"


def test_resume_a_cancelled_run(worker: Any, user: Any, server: LocalServer) -> None:
    server.slow("/slow", 1.5)
    d = {
        "nodes": [node("start", "MANUAL"), http("slow", server.url("/slow")), http("after", server.url("/after"))],
        "edges": [edge("start", "slow"), edge("slow", "after")],
    }
    run = services.run_start(workflow=make_workflow(user, d), inputs={}, user=user)
    wait_until(lambda: server.count("/slow") == 1, 30, 0.02, "the slow call")
    services.run_cancel(run=run)
    assert statuses(Run.objects.get(id=run.id)) == {"start": "succeeded", "slow": "cancelled", "after": "cancelled"}

    services.run_resume(run=run)  # at once: attempt 1 is still waiting for its answer
    run = wait_run(run.id)
    assert run.status == "succeeded", statuses(run)
    time.sleep(0.5)  # attempt 1's answer has come back and was dropped
    assert {p: server.count(p) for p in ["/slow", "/after"]} == {"/slow": 2, "/after": 1}
    nr = NodeRun.objects.get(run=run, node_id="slow")
    assert nr.attempt == 2 and nr.status == "succeeded"
    assert _history(run, "slow") == [(1, "cancelled", "run_cancelled"), (2, "succeeded", None)]
    assert nr.output is not None and nr.output["body"] == {"slept": 1.5}
    assert run.events.filter(type="node.succeeded", node_id="slow").count() == 1
    types = list(run.events.values_list("type", flat=True))
    assert types.index("run.cancelled") < types.index("run.resumed") < types.index("run.succeeded")


def test_resume_keeps_edge_conditions_of_succeeded_nodes(worker: Any, user: Any, server: LocalServer) -> None:
    """A kept node's conditional edge is re-evaluated on resume, not dropped (its target would be skipped)."""
    state = _broken_then_fixed(server, "/big")
    d = {
        "nodes": [node("start", "MANUAL"), http("big", server.url("/big"), retry={"max_attempts": 1}), http("small", server.url("/small"))],
        "edges": [
            edge("start", "big", data={"condition": "{{ output.amount >= 10 }}"}),
            edge("start", "small", data={"condition": "{{ output.amount < 10 }}"}),
        ],
    }
    run = wait_run(services.run_start(workflow=make_workflow(user, d), inputs={"amount": 50}, user=user).id)
    assert statuses(run) == {"start": "succeeded", "big": "failed", "small": "skipped"}
    state["fixed"] = True
    services.run_resume(run=run)
    run = wait_run(run.id)
    assert statuses(run) == {"start": "succeeded", "big": "succeeded", "small": "skipped"}
    assert run.status == "succeeded" and server.count("/big") == 2 and server.count("/small") == 0


def test_a_resumed_node_gets_its_retry_budget_again(worker: Any, user: Any, server: LocalServer) -> None:
    server.responses("/flaky", [(503, {}), (503, {}), (503, {}), (200, {"ok": True})])
    d = {"nodes": [http("f", server.url("/flaky"), retry={"max_attempts": 2, "backoff_s": 0.1, "jitter": 0})], "edges": []}
    run = wait_run(services.run_start(workflow=make_workflow(user, d), inputs={}, user=user).id)
    assert run.status == "failed" and server.count("/flaky") == 2
    services.run_resume(run=run)
    run = wait_run(run.id)
    # Attempt 3 fails with a 503 and is retried (attempt 4), as a fresh run of the node would be.
    assert run.status == "succeeded", _history(run, "f")
    assert [s for _, s, _ in _history(run, "f")] == ["failed", "failed", "failed", "succeeded"]


# --------------------------------------------------------------------------- API


def _failed_run(user: Any, server: LocalServer) -> tuple[Run, dict[str, bool]]:
    state = _broken_then_fixed(server, "/b")
    run = services.run_start(workflow=make_workflow(user, _failing_stop(server)), inputs={}, user=user)
    return wait_run(run.id), state


def test_api_resume_and_retry(worker: Any, api: Any, user: Any, server: LocalServer) -> None:
    run, state = _failed_run(user, server)
    state["fixed"] = True
    resp = api.post(f"/api/runs/{run.id}/retry/")
    assert resp.status_code == 200, resp.content
    assert resp.json()["id"] == str(run.id) and resp.json()["status"] == "running"
    run = wait_run(run.id)
    assert run.status == "succeeded"
    detail = api.get(f"/api/runs/{run.id}/").json()
    b = next(n for n in detail["nodes"] if n["node_id"] == "b")
    assert b["attempt"] == 2 and b["status"] == "succeeded"
    events = api.get(f"/api/runs/{run.id}/events/").json()
    items = events["results"] if isinstance(events, dict) and "results" in events else events
    assert any(e["type"] == "run.resumed" and e["data"]["mode"] == "retry" for e in items)

    # A succeeded run has nothing to resume or retry.
    for action in ("resume", "retry"):
        resp = api.post(f"/api/runs/{run.id}/{action}/")
        assert resp.status_code == 409, resp.content
        assert resp.json()["error"]["code"] == "run_succeeded"


def test_api_resume_and_retry_of_another_users_run_is_404(
    worker: Any, api: Any, other_api: Any, anon_api: Any, user: Any, server: LocalServer
) -> None:
    run, _ = _failed_run(user, server)
    for action in ("resume", "retry"):
        assert other_api.post(f"/api/runs/{run.id}/{action}/").status_code == 404
        assert anon_api.post(f"/api/runs/{run.id}/{action}/").status_code in (401, 403)
    assert api.post("/api/runs/00000000-0000-0000-0000-000000000000/resume/").status_code == 404
    assert Run.objects.get(id=run.id).status == "failed"
    assert not Run.objects.get(id=run.id).events.filter(type="run.resumed").exists()


def test_api_retry_needs_a_failed_node(worker: Any, api: Any, user: Any, server: LocalServer) -> None:
    server.slow("/slow", 1.5)
    d = {"nodes": [node("start", "MANUAL"), http("slow", server.url("/slow"))], "edges": [edge("start", "slow")]}
    run = services.run_start(workflow=make_workflow(user, d), inputs={}, user=user)
    wait_until(lambda: server.count("/slow") == 1, 30, 0.02, "the slow call")
    resp = api.post(f"/api/runs/{run.id}/retry/")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "run_active"
    api.post(f"/api/runs/{run.id}/cancel/")
    resp = api.post(f"/api/runs/{run.id}/retry/")  # cancelled, nothing failed
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "no_failed_nodes"
    resp = api.post(f"/api/runs/{run.id}/resume/")  # but it can be resumed
    assert resp.status_code == 200
    assert wait_run(run.id).status == "succeeded"
    time.sleep(1.0)  # attempt 1's answer comes back (and is dropped) before the test's tables are emptied
    assert server.count("/slow") == 2


def test_resume_an_interrupted_run_gives_in_flight_nodes_a_new_attempt(rec_broker: Any, transactional_db: Any, user: Any) -> None:
    """A run still 'running' whose workers are gone: resume re-queues what was in flight, and the old
    attempt's result, should it ever arrive, is discarded."""
    d = {
        "nodes": [node("start", "MANUAL"), http("a", "http://127.0.0.1:9/a"), http("b", "http://127.0.0.1:9/b")],
        "edges": [edge("start", "a"), edge("a", "b")],
    }
    run = services.run_start(workflow=make_workflow(user, d), inputs={}, user=user)
    assert NodeRun.objects.get(run=run, node_id="start").status == "succeeded"  # a trigger root runs as the run starts
    a = NodeRun.objects.get(run=run, node_id="a")
    assert services.node_claim(node_run_id=a.id, attempt=1) is not None  # then its worker vanished

    services.run_resume(run=run)
    a.refresh_from_db()
    assert (a.status, a.attempt) == ("queued", 2)
    assert _history(run, "a") == [(1, "cancelled", "resumed")]
    assert (a.id, 2) in {tuple(m["args"]) for m in rec_broker.queued_messages()}
    assert _history(run, "start") == [(1, "succeeded", None)]  # kept, not re-run
    late = services.node_complete(node_run_id=a.id, attempt=1, result=services.Result(kind="success", output={"late": True}))
    assert late is False
    a.refresh_from_db()
    assert (a.status, a.attempt, a.output) == ("queued", 2, None)
    resumed = Run.objects.get(id=run.id).events.get(type="run.resumed")
    assert resumed.data["kept"] == ["start"]
