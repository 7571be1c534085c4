"""Issue 3 acceptance: real worker process, PostgreSQL, Redis broker, local HTTP servers."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from typing import Any, cast

import pytest
from django.utils.dateparse import parse_datetime

from executions import services
from executions.models import NodeRun, Run
from tests.support.factories import edge, http, make_workflow, node, statuses, wait_run
from tests.support.servers import LocalServer


def _start(user: Any, definition: dict[str, Any], inputs: dict[str, Any] | None = None) -> Run:
    wf = make_workflow(user, definition)
    return services.run_start(workflow=wf, inputs=inputs or {}, user=user)


def _finished(run: Run, node_id: str) -> Any:
    return NodeRun.objects.get(run=run, node_id=node_id).finished_at


def test_diamond_runs_every_node_exactly_once(worker: Any, user: Any, server: LocalServer) -> None:
    d = {
        "nodes": [
            node("start", "MANUAL"),
            http("a", server.url("/a")),
            http("b", server.url("/b")),
            http("c", server.url("/c")),
            http("d", server.url("/d")),
        ],
        "edges": [edge("start", "a"), edge("a", "b"), edge("a", "c"), edge("b", "d"), edge("c", "d")],
    }
    run = wait_run(_start(user, d).id)
    assert run.status == "succeeded", statuses(run)
    assert {p: server.count(p) for p in ["/a", "/b", "/c", "/d"]} == {"/a": 1, "/b": 1, "/c": 1, "/d": 1}
    assert run.outputs["d"]["status"] == 200


@pytest.mark.parametrize(
    "width,cap",
    [
        (200, 64),  # the parallelism cap: 64 in flight, the rest start as slots free up
        # 150 ready at once on one queue, ZYRA_DISPATCH_AHEAD (64) messages: the other 86 are parked and
        # carried by the threads that finish their siblings (or by messages those completions send).
        (150, 1000),
    ],
    ids=["capped", "parked"],
)
def test_wide_fan_out_and_fan_in_each_node_once(worker: Any, user: Any, server: LocalServer, width: int, cap: int) -> None:
    prefix = f"/n{cap}"
    nodes = (
        [node("start", "MANUAL")]
        + [http(f"n{i}", server.url(f"{prefix}/{i}")) for i in range(width)]
        + [node("join", "MERGE", {"mode": "list"})]
    )
    edges = [edge("start", f"n{i}") for i in range(width)] + [edge(f"n{i}", "join") for i in range(width)]
    d = {"nodes": nodes, "edges": edges, "settings": {"max_parallel_nodes": cap}}
    run = wait_run(_start(user, d).id, timeout=120)
    assert run.status == "succeeded", statuses(run)
    assert all(server.count(f"{prefix}/{i}") == 1 for i in range(width))
    join = NodeRun.objects.get(run=run, node_id="join")
    assert join.attempt == 1 and join.output is not None and len(join.output) == width
    assert Run.objects.get(id=run.id).events.filter(type="node.started", node_id="join").count() == 1
    assert not NodeRun.objects.filter(run=run, dispatched_at__isnull=True).exists()  # nothing left parked


def test_non_series_parallel_dag(worker: Any, user: Any, server: LocalServer) -> None:
    ids = ["A", "B", "C", "D", "E", "F"]
    d = {
        "nodes": [http(i, server.url(f"/{i}")) for i in ids],
        "edges": [edge("A", "C"), edge("A", "D"), edge("B", "D"), edge("B", "E"), edge("C", "F"), edge("D", "F"), edge("E", "F")],
    }
    run = wait_run(_start(user, d).id)
    assert run.status == "succeeded", statuses(run)
    assert {i: server.count(f"/{i}") for i in ids} == dict.fromkeys(ids, 1)
    f = NodeRun.objects.get(run=run, node_id="F")
    for pred in ["C", "D", "E"]:
        # started_at is the claim's transaction time: equal to the last predecessor's finish when claimed in its commit.
        assert _finished(run, pred) <= f.started_at


def test_no_level_barriers(worker: Any, user: Any, server: LocalServer) -> None:
    server.slow("/slow", 1.5)
    d = {
        "nodes": [http("A", server.url("/a")), http("B", server.url("/slow")), http("C", server.url("/c")), http("D", server.url("/d"))],
        "edges": [edge("A", "B"), edge("A", "C"), edge("C", "D")],
    }
    run = wait_run(_start(user, d).id)
    assert run.status == "succeeded"
    assert _finished(run, "D") < _finished(run, "B")


def _branching(server: LocalServer, total: int) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "MANUAL"),
            node("check", "CONDITION", {"expression": "{{ input.total > 100 }}"}),
            http("yes1", server.url("/yes1")),
            http("yes2", server.url("/yes2")),
            http("no1", server.url("/no1")),
            http("no2", server.url("/no2")),
            http("merge", server.url("/merge")),
        ],
        "edges": [
            edge("start", "check"),
            edge("check", "yes1", "true"),
            edge("yes1", "yes2"),
            edge("check", "no1", "false"),
            edge("no1", "no2"),
            edge("yes2", "merge"),
            edge("no2", "merge"),
        ],
    }


@pytest.mark.parametrize("total,taken,untaken", [(250, "yes", "no"), (50, "no", "yes")])
def test_condition_runs_one_branch_skips_the_other_and_merges_once(
    worker: Any, user: Any, server: LocalServer, total: int, taken: str, untaken: str
) -> None:
    run = wait_run(_start(user, _branching(server, total), {"total": total}).id)
    assert run.status == "succeeded", statuses(run)
    st = statuses(run)
    assert st[f"{taken}1"] == st[f"{taken}2"] == "succeeded"
    assert st[f"{untaken}1"] == st[f"{untaken}2"] == "skipped"
    assert server.count(f"/{untaken}1") == 0 and server.count(f"/{untaken}2") == 0
    assert server.count(f"/{taken}1") == 1 and server.count("/merge") == 1
    assert run.events.filter(type="edge.skipped").exists()


def test_edge_conditions_route(worker: Any, user: Any, server: LocalServer) -> None:
    d = {
        "nodes": [node("start", "MANUAL"), http("big", server.url("/big")), http("small", server.url("/small"))],
        "edges": [
            edge("start", "big", data={"condition": "{{ output.amount >= 10 }}"}),
            edge("start", "small", data={"condition": "{{ output.amount < 10 }}"}),
        ],
    }
    run = wait_run(_start(user, d, {"amount": 3}).id)
    assert statuses(run) == {"start": "succeeded", "big": "skipped", "small": "succeeded"}
    assert server.count("/big") == 0 and server.count("/small") == 1


def test_a_disabled_node_hands_its_input_on_without_running(worker: Any, user: Any, server: LocalServer) -> None:
    # A disabled node is claimed like any other and ends skipped (running -> skipped), passing its input on;
    # before, that transition was refused and the node stayed running until its lease ran out, again and again.
    d = {
        "nodes": [
            node("start", "MANUAL"),
            http("off", server.url("/off"), isEnabled=False),
            http("after", server.url("/after?seen={{ nodes.off.output.order }}")),
        ],
        "edges": [edge("start", "off"), edge("off", "after")],
    }
    run = wait_run(_start(user, d, {"order": 5}).id)
    assert run.status == "succeeded", statuses(run)
    off = NodeRun.objects.get(run=run, node_id="off")
    assert (off.status, off.output) == ("skipped", {"order": 5})
    assert server.count("/off") == 0 and server.count("/after") == 1
    assert [r.path for r in server.requests if r.path.startswith("/after")] == ["/after?seen=5"]


def test_retry_503_then_success_with_backoff(worker: Any, user: Any, server: LocalServer) -> None:
    server.responses("/flaky", [(503, {"e": 1}), (503, {"e": 2}), (200, {"ok": True})])
    d = {"nodes": [http("f", server.url("/flaky"), retry={"max_attempts": 3, "backoff_s": 0.3, "jitter": 0})], "edges": []}
    run = wait_run(_start(user, d).id)
    assert run.status == "succeeded"
    nr = NodeRun.objects.get(run=run, node_id="f")
    assert nr.attempt == 3 and server.count("/flaky") == 3
    assert [a["status"] for a in nr.attempts] == ["failed", "failed", "succeeded"]
    assert nr.attempts[0]["error"]["code"] == "http_5xx"
    gap1 = (
        cast(datetime, parse_datetime(nr.attempts[1]["started_at"])) - cast(datetime, parse_datetime(nr.attempts[0]["finished_at"]))
    ).total_seconds()
    gap2 = (
        cast(datetime, parse_datetime(nr.attempts[2]["started_at"])) - cast(datetime, parse_datetime(nr.attempts[1]["finished_at"]))
    ).total_seconds()
    assert gap1 >= 0.25 and gap2 >= 0.55, (gap1, gap2)  # 0.3 s then 0.6 s (exponential)
    assert run.events.filter(type="node.retrying", node_id="f").count() == 2


def test_400_is_not_retried(worker: Any, user: Any, server: LocalServer) -> None:
    server.responses("/bad", [(400, {"e": "bad"})])
    d = {"nodes": [http("f", server.url("/bad"), retry={"max_attempts": 3, "backoff_s": 0.1})], "edges": []}
    run = wait_run(_start(user, d).id)
    assert run.status == "failed"
    nr = NodeRun.objects.get(run=run, node_id="f")
    assert nr.status == "failed" and nr.attempt == 1 and nr.error is not None and nr.error["code"] == "http_4xx"
    assert server.count("/bad") == 1


def _failing(server: LocalServer, on_error: str) -> dict[str, Any]:
    server.responses("/bad", [(400, {"e": "bad"})])
    return {
        "nodes": [
            node("start", "MANUAL"),
            http("bad", server.url("/bad"), on_error=on_error),
            http("after_bad", server.url("/after_bad")),
            http("handler", server.url("/handler")),
            http("other", server.url("/other")),
        ],
        "edges": [edge("start", "bad"), edge("bad", "after_bad"), edge("bad", "handler", "error"), edge("start", "other")],
    }


def test_on_error_stop_fails_the_run(worker: Any, user: Any, server: LocalServer) -> None:
    server.slow("/other", 1.0)
    run = wait_run(_start(user, _failing(server, "stop")).id)
    st = statuses(run)
    assert run.status == "failed" and st["bad"] == "failed"
    assert st["after_bad"] == "cancelled" and st["handler"] == "cancelled"
    assert run.error["node_id"] == "bad"
    assert server.count("/after_bad") == 0


def test_on_error_continue_partially_succeeds(worker: Any, user: Any, server: LocalServer) -> None:
    run = wait_run(_start(user, _failing(server, "continue")).id)
    st = statuses(run)
    assert run.status == "partially_succeeded", st
    assert st == {"start": "succeeded", "bad": "failed", "after_bad": "skipped", "handler": "skipped", "other": "succeeded"}


def test_on_error_error_branch_runs_the_handler(worker: Any, user: Any, server: LocalServer) -> None:
    run = wait_run(_start(user, _failing(server, "error_branch")).id)
    st = statuses(run)
    assert st == {"start": "succeeded", "bad": "failed", "after_bad": "skipped", "handler": "succeeded", "other": "succeeded"}
    assert run.status == "succeeded"
    assert server.count("/handler") == 1 and server.count("/after_bad") == 0


def test_hanging_server_times_out_and_run_ends(worker: Any, user: Any, server: LocalServer) -> None:
    server.hang("/hang", 30)
    d = {"nodes": [http("h", server.url("/hang"), timeout_s=1, retry={"max_attempts": 2, "backoff_s": 0.1})], "edges": []}
    t0 = time.monotonic()
    run = wait_run(_start(user, d).id, timeout=20)
    elapsed = time.monotonic() - t0
    nr = NodeRun.objects.get(run=run, node_id="h")
    assert run.status == "failed" and nr.status == "timed_out" and nr.attempt == 2
    assert [a["error"]["code"] for a in nr.attempts] == ["timeout", "timeout"]
    for a in nr.attempts:
        took = (cast(datetime, parse_datetime(a["finished_at"])) - cast(datetime, parse_datetime(a["started_at"]))).total_seconds()
        assert took < 1 + 1.5, took
    assert elapsed < 10


def test_cancel_mid_run(worker: Any, user: Any, server: LocalServer) -> None:
    d = {
        "nodes": [node("start", "MANUAL"), node("wait", "DELAY", {"seconds": 30}), http("after", server.url("/after"))],
        "edges": [edge("start", "wait"), edge("wait", "after")],
    }
    run = _start(user, d)
    from tests.support.workers import wait_until

    wait_until(lambda: NodeRun.objects.get(run=run, node_id="wait").status == "deferred", 15, message="deferred delay")
    services.run_cancel(run=run)
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert statuses(run) == {"start": "succeeded", "wait": "cancelled", "after": "cancelled"}
    time.sleep(1.0)
    assert server.count("/after") == 0
    assert not run.events.filter(type="node.started", node_id="after").exists()


def test_duplicate_message_runs_handler_once(worker: Any, user: Any, server: LocalServer) -> None:
    from executions.tasks import execute_node

    server.slow("/once", 1.0)
    d = {"nodes": [node("start", "MANUAL", {}), http("once", server.url("/once"))], "edges": [edge("start", "once")]}
    run = _start(user, d)
    from tests.support.workers import wait_until

    nr = wait_until(lambda: NodeRun.objects.filter(run=run, node_id="once", status__in=["queued", "running"]).first(), 15)
    for _ in range(3):
        execute_node.apply_async(args=(nr.id, nr.attempt), queue=nr.queue)
    run = wait_run(run.id)
    time.sleep(0.5)
    assert run.status == "succeeded"
    assert server.count("/once") == 1
    assert run.events.filter(type="node.started", node_id="once").count() == 1


def test_sequential_mode_runs_one_node_at_a_time(worker: Any, user: Any, server: LocalServer) -> None:
    server.slow("/s", 0.2)
    nodes = [node("start", "MANUAL")] + [http(f"b{i}", server.url("/s")) for i in range(4)]
    d = {"nodes": nodes, "edges": [edge("start", f"b{i}") for i in range(4)], "settings": {"sequential": True}}
    run = wait_run(_start(user, d).id)
    assert run.status == "succeeded"
    spans = sorted(
        (cast(datetime, nr.started_at), cast(datetime, nr.finished_at), nr.topo_index)
        for nr in NodeRun.objects.filter(run=run).exclude(node_id="start")
    )
    assert [s[2] for s in spans] == sorted(s[2] for s in spans)  # topological order
    for (_, e1, _), (s2, _, _) in itertools.pairwise(spans):
        assert e1 <= s2  # no overlap


def test_max_parallel_nodes_caps_in_flight(worker: Any, user: Any, server: LocalServer) -> None:
    server.slow("/s", 0.3)
    nodes = [node("start", "MANUAL")] + [http(f"b{i}", server.url("/s")) for i in range(6)]
    d = {"nodes": nodes, "edges": [edge("start", f"b{i}") for i in range(6)], "settings": {"max_parallel_nodes": 2}}
    run = wait_run(_start(user, d).id)
    assert run.status == "succeeded"
    spans = [
        # started_at, not the history's millisecond string: a slot freed and re-taken in one commit has equal times.
        (cast(datetime, nr.started_at), cast(datetime, nr.finished_at))
        for nr in NodeRun.objects.filter(run=run).exclude(node_id="start")
    ]
    for s, _ in spans:
        overlapping = sum(1 for s2, e2 in spans if s2 <= s < e2)
        assert overlapping <= 2


def test_template_naming_missing_data_fails_with_path(worker: Any, user: Any, server: LocalServer) -> None:
    d = {
        "nodes": [
            node("start", "MANUAL"),
            http("a", server.url("/a")),
            http("b", server.url("/b") + "?x={{ nodes.a.output.body.missing.deeper }}"),
        ],
        "edges": [edge("start", "a"), edge("a", "b")],
    }
    run = wait_run(_start(user, d).id)
    nr = NodeRun.objects.get(run=run, node_id="b")
    assert nr.status == "failed" and nr.error is not None and nr.error["code"] == "template"
    assert "nodes.a.output.body.missing.deeper" in nr.error["message"]
    assert "/data/config/url" in nr.error["message"]
    assert server.count("/b") == 0


def test_inputs_violating_input_schema_are_rejected_at_start(api: Any, user: Any) -> None:
    d = {
        "nodes": [
            node(
                "start",
                "MANUAL",
                {"input_schema": {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "integer"}}}},
            )
        ],
        "edges": [],
    }
    wf = make_workflow(user, d)
    resp = api.post(f"/api/workflows/{wf.id}/runs/", {"inputs": {"order_id": "x"}}, format="json")
    assert resp.status_code == 400, resp.content
    body = resp.json()["error"]
    assert body["code"] == "invalid_inputs"
    assert body["details"][0]["path"] == "/inputs/order_id"
    assert Run.objects.count() == 0


def test_idempotency_key_returns_same_run(api: Any, user: Any) -> None:
    wf = make_workflow(user, {"nodes": [node("start", "MANUAL")], "edges": []})
    r1 = api.post(f"/api/workflows/{wf.id}/runs/", {"inputs": {}, "idempotency_key": "k-1"}, format="json")
    r2 = api.post(f"/api/workflows/{wf.id}/runs/", {"inputs": {}, "idempotency_key": "k-1"}, format="json")
    assert r1.status_code == 202 and r2.status_code == 202
    assert r1.json()["id"] == r2.json()["id"]
    assert Run.objects.filter(workflow=wf).count() == 1
