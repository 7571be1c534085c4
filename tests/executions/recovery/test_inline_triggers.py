"""Instant nodes - trigger roots (MANUAL, WEBHOOK, SCHEDULE) and a DELAY's first attempt - run in the transaction that starts their run.

No worker consumes this test's broker: what the start sends is read back from it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from executions import services
from executions.models import NodeRun, Run, RunEvent
from tests.executions.recovery.support import RedisServer
from tests.support.factories import edge, http, make_workflow, node

URL = "http://127.0.0.1:9/never"  # never called: no worker runs here


def _sent(broker: RedisServer) -> set[int]:
    return {m["args"][0] for queue in ("io", "cpu") for m in broker.queued_messages(queue)}


def test_the_trigger_root_runs_as_the_run_starts_and_its_successors_are_sent(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    d = {"nodes": [node("start", "MANUAL"), http("a", URL), http("b", URL)], "edges": [edge("start", "a"), edge("start", "b")]}
    run = services.run_start(workflow=make_workflow(user, d), inputs={"order": 7}, user=user)
    rows = {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}
    start = rows["start"]
    assert (start.status, start.attempt, start.output) == ("succeeded", 1, {"order": 7})
    assert [a["status"] for a in start.attempts] == ["succeeded"] and start.started_at and start.finished_at
    assert (rows["a"].status, rows["b"].status) == ("queued", "queued")
    # No message for the trigger; one for each successor, sent by the starting commit.
    assert _sent(rec_broker) == {rows["a"].id, rows["b"].id}
    types = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("type", "node_id"))
    assert types[:5] == [
        ("run.queued", ""),
        ("run.started", ""),
        ("node.queued", "start"),
        ("node.started", "start"),
        ("node.succeeded", "start"),
    ]
    assert ("node.queued", "a") in types and ("node.queued", "b") in types
    r = Run.objects.get(id=run.id)
    assert (r.status, r.nodes_done, r.in_flight) == ("running", 1, 2)


def test_a_run_of_a_lone_trigger_succeeds_in_its_starting_transaction(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    run = services.run_start(workflow=make_workflow(user, {"nodes": [node("start", "MANUAL")], "edges": []}), inputs={"x": 1}, user=user)
    assert (run.status, run.outputs) == ("succeeded", {"start": {"x": 1}})
    assert Run.objects.get(id=run.id).status == "succeeded"
    assert _sent(rec_broker) == set()


def test_a_disabled_trigger_root_passes_the_input_through_as_skipped(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    d = {"nodes": [node("start", "MANUAL", isEnabled=False), http("a", URL)], "edges": [edge("start", "a")]}
    run = services.run_start(workflow=make_workflow(user, d), inputs={"x": 2}, user=user)
    rows = {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}
    assert rows["start"].status == "skipped" and rows["a"].status == "queued"


def test_with_inline_triggers_off_the_trigger_root_waits_for_a_worker(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, settings: Any
) -> None:
    settings.ZYRA_INLINE_TRIGGERS = False
    d = {"nodes": [node("start", "MANUAL"), http("a", URL)], "edges": [edge("start", "a")]}
    run = services.run_start(workflow=make_workflow(user, d), inputs={}, user=user)
    rows = {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}
    assert (rows["start"].status, rows["a"].status) == ("queued", "pending")
    assert _sent(rec_broker) == {rows["start"].id}


def test_a_run_waiting_for_a_concurrency_slot_does_not_run_its_trigger_yet(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    d = {"nodes": [node("start", "MANUAL"), http("a", URL)], "edges": [edge("start", "a")]}
    wf = make_workflow(user, d, max_concurrent_runs=1)
    first = services.run_start(workflow=wf, inputs={}, user=user)
    second = services.run_start(workflow=wf, inputs={}, user=user)
    assert Run.objects.get(id=first.id).status == "running"
    assert Run.objects.get(id=second.id).status == "queued"
    assert NodeRun.objects.get(run=second, node_id="start").status == "pending"


def test_a_delay_after_the_trigger_defers_as_the_run_starts_and_only_its_wake_up_is_sent(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    d = {
        "nodes": [node("start", "MANUAL"), node("wait", "DELAY", {"seconds": "{{ input.pause }}"}), http("a", URL)],
        "edges": [edge("start", "wait"), edge("wait", "a")],
    }
    before = timezone.now()
    run = services.run_start(workflow=make_workflow(user, d), inputs={"pause": 30}, user=user)
    rows = {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}
    wait = rows["wait"]
    assert (rows["start"].status, wait.status, rows["a"].status) == ("succeeded", "deferred", "pending")
    assert wait.started_at is not None and wait.next_attempt_at is not None
    assert timedelta(seconds=29) <= wait.next_attempt_at - before <= timedelta(seconds=31)
    # One message: the DELAY's wake-up, a countdown to the same moment (a worker claims it then).
    messages = [m for queue in ("io", "cpu") for m in rec_broker.queued_messages(queue)]
    assert [tuple(m["args"]) for m in messages] == [(wait.id, wait.attempt)]
    eta = datetime.fromisoformat(messages[0]["eta"])
    assert abs((eta - wait.next_attempt_at).total_seconds()) < 1
    types = list(RunEvent.objects.filter(run=run, node_id="wait", type__startswith="node.").order_by("seq").values_list("type", flat=True))
    assert types == ["node.queued", "node.started", "node.deferred"]


def test_a_zero_delay_passes_at_once_and_its_successor_is_sent(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    d = {
        "nodes": [node("start", "MANUAL"), node("wait", "DELAY", {"seconds": 0}), http("a", URL)],
        "edges": [edge("start", "wait"), edge("wait", "a")],
    }
    run = services.run_start(workflow=make_workflow(user, d), inputs={"k": 1}, user=user)
    rows = {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}
    assert (rows["wait"].status, rows["wait"].output, rows["a"].status) == ("succeeded", {"k": 1}, "queued")
    assert _sent(rec_broker) == {rows["a"].id}


def test_a_delay_with_a_bad_duration_fails_in_the_starting_transaction(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    d = {
        "nodes": [node("start", "MANUAL"), node("wait", "DELAY", {"seconds": "{{ input.pause }}"}), http("a", URL)],
        "edges": [edge("start", "wait"), edge("wait", "a")],
    }
    run = services.run_start(workflow=make_workflow(user, d), inputs={"pause": "soon"}, user=user)
    rows = {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}
    assert rows["wait"].status == "failed" and rows["wait"].error is not None and rows["wait"].error["code"] == "validation"
    assert rows["a"].status in ("skipped", "cancelled")
    assert Run.objects.get(id=run.id).status == "failed"
    assert _sent(rec_broker) == set()
