"""Instant nodes made ready by a completion (CALCULATOR, CONDITION, SWITCH, MERGE, a DELAY's first
attempt) run in that completion's transaction; an instant node's own message (a DELAY's wake-up) is
claimed, run and completed in one transaction (ZYRA_INSTANT_NODES).

No worker consumes this test's broker: nodes are claimed and completed here, and what each commit
sends is read back from the broker.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from executions import services
from executions.models import NodeRun, Run, RunEvent
from executions.nodes.base import handlers
from tests.executions.recovery.support import RedisServer
from tests.support.factories import edge, http, make_workflow, node

URL = "http://127.0.0.1:9/never"  # never called: results are recorded by hand


def _sent(broker: RedisServer) -> Counter[int]:
    return Counter(m["args"][0] for queue in ("io", "cpu") for m in broker.queued_messages(queue))


def _start(user: Any, nodes: list[dict[str, Any]], edges: list[dict[str, Any]], inputs: Any = None) -> tuple[Run, dict[str, NodeRun]]:
    run = services.run_start(workflow=make_workflow(user, {"nodes": nodes, "edges": edges}), inputs=inputs or {}, user=user)
    return run, _rows(run)


def _rows(run: Run) -> dict[str, NodeRun]:
    return {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}


def _finish_http(nr: NodeRun, output: Any) -> tuple[bool, services.Claim | None]:
    """Claim the HTTP node as a worker would, and record ``output`` as its result."""
    assert services.node_claim(node_run_id=nr.id, attempt=nr.attempt) is not None
    return services.node_complete_and_claim(node_run_id=nr.id, attempt=nr.attempt, result=services.Result(kind="success", output=output))


def _seqs_contiguous(run: Run) -> None:
    seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))


def _branching() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """fetch -> double (CALCULATOR) -> big? (CONDITION) -> yes / no (CALCULATORs) -> join (MERGE) -> after (HTTP)."""
    nodes = [
        node("start", "MANUAL"),
        http("fetch", URL),
        node("double", "CALCULATOR", {"expression": "x * 2", "variables": {"x": "{{ nodes.fetch.output.amount }}"}}),
        node("big", "CONDITION", {"expression": "{{ nodes.double.output.result > 100 }}"}),
        node("yes", "CALCULATOR", {"expression": "v + 1", "variables": {"v": "{{ nodes.double.output.result }}"}}),
        node("no", "CALCULATOR", {"expression": "v - 1", "variables": {"v": "{{ nodes.double.output.result }}"}}),
        node("join", "MERGE", {"mode": "list"}),
        http("after", URL),
    ]
    edges = [
        edge("start", "fetch"),
        edge("fetch", "double"),
        edge("double", "big"),
        edge("big", "yes", "true"),
        edge("big", "no", "false"),
        edge("yes", "join"),
        edge("no", "join"),
        edge("join", "after"),
    ]
    return nodes, edges


@pytest.mark.parametrize("amount,taken,untaken,result", [(80, "yes", "no", 161), (20, "no", "yes", 39)])
def test_a_completion_runs_the_instant_nodes_it_readies_in_its_own_commit(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, amount: int, taken: str, untaken: str, result: int
) -> None:
    run, rows = _start(user, *_branching())
    assert _sent(rec_broker) == Counter({rows["fetch"].id: 1})
    rec_broker._client().flushall()
    ok, _ = _finish_http(rows["fetch"], {"amount": amount})
    assert ok
    rows = _rows(run)
    # The chain ran in the completion's transaction: each node read what the one before it produced
    # there (not yet in the database), and only the condition's taken side ran.
    assert rows["double"].output == {"result": amount * 2}
    assert rows["big"].status == "succeeded"
    assert (rows[taken].status, rows[taken].output) == ("succeeded", {"result": result})
    assert rows[untaken].status == "skipped" and rows[untaken].attempt == 0
    assert rows["join"].status == "succeeded" and rows["after"].status == "queued"
    for nid in ("double", "big", taken, "join"):
        assert rows[nid].attempt == 1 and [a["status"] for a in rows[nid].attempts] == ["succeeded"], nid
    # Not one message for the instant nodes: only the HTTP node after them is sent.
    assert _sent(rec_broker) == Counter({rows["after"].id: 1})
    r = Run.objects.get(id=run.id)
    assert (r.status, r.in_flight, r.nodes_done) == ("running", 1, 7)
    for nid in ("double", "big", taken, "join"):
        types = list(RunEvent.objects.filter(run=run, node_id=nid, type__startswith="node.").order_by("seq").values_list("type", flat=True))
        assert types == ["node.queued", "node.started", "node.succeeded"], nid
    _seqs_contiguous(run)


def test_with_instant_nodes_off_a_calculator_goes_to_a_worker(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, settings: Any
) -> None:
    settings.ZYRA_INSTANT_NODES = False
    run, rows = _start(user, *_branching())
    rec_broker._client().flushall()
    _finish_http(rows["fetch"], {"amount": 80})
    rows = _rows(run)
    assert (rows["double"].status, rows["big"].status) == ("queued", "pending")
    assert dict(_sent(rec_broker)) == {rows["double"].id: 1}
    assert [m["args"][0] for m in rec_broker.queued_messages("cpu")] == [rows["double"].id]


def test_the_instant_budget_bounds_a_transaction_and_the_rest_go_to_workers(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, settings: Any
) -> None:
    settings.ZYRA_INSTANT_BUDGET_MS = 0  # one instant node per transaction (the budget is checked after each)
    nodes = [node("start", "MANUAL"), http("fetch", URL)] + [node(f"c{i}", "CALCULATOR", {"expression": f"{i} + 1"}) for i in range(3)]
    edges = [edge("start", "fetch"), edge("fetch", "c0"), edge("c0", "c1"), edge("c1", "c2")]
    run, rows = _start(user, nodes, edges)
    rec_broker._client().flushall()
    _finish_http(rows["fetch"], {})
    rows = _rows(run)
    assert [rows[f"c{i}"].status for i in range(3)] == ["succeeded", "queued", "pending"]
    assert _sent(rec_broker) == Counter({rows["c1"].id: 1})


def test_a_failing_instant_node_fails_in_the_completion_and_the_run_fails(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    nodes = [node("start", "MANUAL"), http("fetch", URL), node("div", "CALCULATOR", {"expression": "1 / 0"}), http("after", URL)]
    run, rows = _start(user, nodes, [edge("start", "fetch"), edge("fetch", "div"), edge("div", "after")])
    rec_broker._client().flushall()
    _finish_http(rows["fetch"], {})
    rows = _rows(run)
    assert rows["div"].status == "failed" and rows["div"].error is not None and rows["div"].error["code"] == "validation"
    assert rows["after"].status in ("skipped", "cancelled")
    assert Run.objects.get(id=run.id).status == "failed"
    assert _sent(rec_broker) == Counter()


def test_a_crash_inside_the_instant_chain_leaves_nothing_of_it_and_a_redo_runs_each_node_once(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, monkeypatch: Any
) -> None:
    nodes = [node("start", "MANUAL"), http("fetch", URL)] + [node(f"c{i}", "CALCULATOR", {"expression": f"{i} + 1"}) for i in range(3)]
    run, rows = _start(user, nodes, [edge("start", "fetch"), edge("fetch", "c0"), edge("c0", "c1"), edge("c1", "c2")])
    fetch = rows["fetch"]
    assert services.node_claim(node_run_id=fetch.id, attempt=1) is not None
    events_before = RunEvent.objects.filter(run=run).count()
    calculator = handlers.get("CALCULATOR")
    real_run, calls = calculator.run, []

    def dies_on_the_second(ctx: Any) -> Any:
        calls.append(ctx.node_id)
        if len(calls) == 2:
            raise SystemExit("the worker process died")  # not an Exception: nothing in the engine catches it
        return real_run(ctx)

    monkeypatch.setattr(calculator, "run", dies_on_the_second)
    with pytest.raises(SystemExit):
        services.node_complete_and_claim(node_run_id=fetch.id, attempt=1, result=services.Result(kind="success", output={"k": 1}))
    # Rolled back whole: the HTTP node still holds its claim, c0's success went with it, no event, no message.
    rows = _rows(run)
    assert rows["fetch"].status == "running"
    assert [rows[f"c{i}"].status for i in range(3)] == ["pending"] * 3 and rows["c0"].attempt == 0
    assert RunEvent.objects.filter(run=run).count() == events_before
    monkeypatch.setattr(calculator, "run", real_run)
    # The result arrives again (the worker's retry, or the sweeper's new attempt): each node runs once.
    ok, _ = services.node_complete_and_claim(node_run_id=fetch.id, attempt=1, result=services.Result(kind="success", output={"k": 1}))
    assert ok
    rows = _rows(run)
    assert [(rows[f"c{i}"].status, rows[f"c{i}"].attempt, rows[f"c{i}"].output) for i in range(3)] == [
        ("succeeded", 1, {"result": i + 1}) for i in range(3)
    ]
    r = Run.objects.get(id=run.id)
    assert (r.status, r.outputs) == ("succeeded", {"c2": {"result": 3}})  # the sink's output, taken from the transaction's rows
    started = Counter(RunEvent.objects.filter(run=run, type="node.started").values_list("node_id", flat=True))
    assert all(started[f"c{i}"] == 1 for i in range(3))
    _seqs_contiguous(run)


def test_a_delays_wake_up_is_claimed_run_and_completed_in_one_transaction(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    nodes = [
        node("start", "MANUAL"),
        node("wait", "DELAY", {"seconds": 0.3}),
        node("calc", "CALCULATOR", {"expression": "n * 3", "variables": {"n": "{{ input.n }}"}}),
        http("a", URL),
        http("b", URL),
    ]
    run, rows = _start(user, nodes, [edge("start", "wait"), edge("wait", "calc"), edge("calc", "a"), edge("calc", "b")], {"n": 5})
    wait = rows["wait"]
    assert wait.status == "deferred"
    rec_broker._client().flushall()
    assert wait.next_attempt_at is not None
    time.sleep(max(0.0, (wait.next_attempt_at - timezone.now()).total_seconds()))
    asked: list[str] = []

    def plan(graph: Any, nr: NodeRun) -> tuple[tuple[str, ...], int]:
        asked.append(nr.node_id)
        return ("io",), 1  # take one node for this thread and one for a fan-out thread

    held, claim = services.node_claim_or_run(node_run_id=wait.id, attempt=wait.attempt, plan=plan)
    assert held and asked == ["wait"]
    rows = _rows(run)
    assert rows["wait"].status == "succeeded" and [a["status"] for a in rows["wait"].attempts] == ["deferred", "succeeded"]
    assert rows["calc"].output == {"result": 15}
    # Both HTTP branches were claimed with it (this thread's, and the fan-out thread's): no message at all.
    assert claim is not None and {claim.node_run.node_id, *(c.node_run.node_id for c in claim.extra)} == {"a", "b"}
    assert rows["a"].status == rows["b"].status == "running"
    assert _sent(rec_broker) == Counter()
    # Its message again (a duplicate delivery): not ours any more.
    assert services.node_claim_or_run(node_run_id=wait.id, attempt=wait.attempt, plan=plan) == (False, None)
    _seqs_contiguous(run)


def test_a_plain_claim_of_an_instant_node_only_claims_it(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, settings: Any
) -> None:
    # Without a plan (the sweeper's tests, a caller that runs the handler itself), or with the flag off.
    settings.ZYRA_INSTANT_NODES = False
    nodes = [node("start", "MANUAL"), http("fetch", URL), node("calc", "CALCULATOR", {"expression": "1 + 1"})]
    run, rows = _start(user, nodes, [edge("start", "fetch"), edge("fetch", "calc")])
    _finish_http(rows["fetch"], {})
    calc = _rows(run)["calc"]
    settings.ZYRA_INSTANT_NODES = True
    held, claim = services.node_claim_or_run(node_run_id=calc.id, attempt=calc.attempt)
    assert held and claim is not None and claim.node_run.node_id == "calc"
    assert NodeRun.objects.get(id=calc.id).status == "running"


def test_an_instant_chain_reads_its_rows_once_whatever_its_length(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    """The completion that runs a chain of instant nodes reads the rows they route to and take inputs from
    in one query (not one per node): the statements of the whole commit do not grow with the chain."""

    def statements(length: int) -> int:
        nodes = [node("start", "MANUAL"), http("fetch", URL), http("side", URL)]
        nodes += [node(f"c{i}", "CALCULATOR", {"expression": f"{i} + 1"}) for i in range(length)] + [node("join", "MERGE")]
        edges = [edge("start", "fetch"), edge("start", "side"), edge("fetch", "c0"), edge("side", "join")]
        edges += [edge(f"c{i}", f"c{i + 1}") for i in range(length - 1)] + [edge(f"c{length - 1}", "join")]
        run, rows = _start(user, nodes, edges)
        _finish_http(rows["side"], {"s": 1})
        fetch = _rows(run)["fetch"]
        assert services.node_claim(node_run_id=fetch.id, attempt=1) is not None
        with CaptureQueriesContext(connection) as queries:
            ok, _ = services.node_complete_and_claim(node_run_id=fetch.id, attempt=1, result=services.Result(kind="success", output={}))
        assert ok
        final = _rows(run)
        assert all(final[f"c{i}"].status == "succeeded" for i in range(length)) and final["join"].status == "succeeded"
        assert Run.objects.get(id=run.id).status == "succeeded"
        return len(queries.captured_queries)

    assert statements(8) == statements(2)


def test_an_instant_nodes_templates_share_one_render_budget(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, monkeypatch: Any
) -> None:
    """An instant node runs with its run's row locked (or inside the API call that starts the run):
    all its templates together get what one template string gets, not that much each."""
    from executions.engine import templates

    monkeypatch.setattr(templates, "MAX_RENDER_S", 0.3)
    slow = "{% for c in 'a' * 400000 %}{% if c == 'b' %}x{% endif %}{% endfor %}{{ 1 }}"  # ~10 ms each here
    variables = {f"v{i}": slow for i in range(100)}
    nodes = [node("start", "MANUAL"), http("fetch", URL), node("calc", "CALCULATOR", {"expression": "v0 + 1", "variables": variables})]
    run, rows = _start(user, nodes, [edge("start", "fetch"), edge("fetch", "calc")])
    _finish_http(rows["fetch"], {})
    calc = _rows(run)["calc"]
    assert calc.status == "failed" and calc.error is not None and calc.error["code"] == "template", calc.error
    assert "took longer than 0.3 s in all" in calc.error["message"]
    assert Run.objects.get(id=run.id).status == "failed"


def test_an_instant_nodes_times_are_its_own(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    """Its start and finish are when it ran, not the transaction's first instant: a slow one shows a
    duration, and what follows it is queued when it finished."""
    slow = "{% for c in 'a' * 1000000 %}{% if c == 'b' %}x{% endif %}{% endfor %}{{ 1 }}"  # ~25 ms each here
    nodes = [
        node("start", "MANUAL"),
        http("fetch", URL),
        node("calc", "CALCULATOR", {"expression": "a + b", "variables": {"a": slow, "b": slow}}),
        http("after", URL),
    ]
    run, rows = _start(user, nodes, [edge("start", "fetch"), edge("fetch", "calc"), edge("calc", "after")])
    _finish_http(rows["fetch"], {})
    rows = _rows(run)
    calc, fetch, after = rows["calc"], rows["fetch"], rows["after"]
    assert calc.status == "succeeded" and calc.output == {"result": 2}
    assert fetch.finished_at and calc.started_at and calc.finished_at and after.dispatched_at
    assert fetch.finished_at <= calc.started_at < calc.finished_at <= after.dispatched_at
    assert calc.duration_ms is not None and calc.duration_ms >= 5, calc.duration_ms
