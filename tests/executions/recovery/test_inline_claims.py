"""Hand-offs without the broker: the transaction that records a node's result claims the next node.

No worker consumes this test's broker: nodes are claimed and completed here,
as a worker thread would, so each claim and message can be checked.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from executions import services
from executions.engine.graph import Graph
from executions.models import NodeRun, RunEvent
from tests.executions.recovery.support import RedisServer
from tests.support.factories import edge, http, make_workflow, node, transform
from tests.support.pg import second_connection

URL = "http://127.0.0.1:9/never"  # never called: results are recorded by hand


def _fan(user: Any, branches: Sequence[str] = ("a", "b"), claim_start: bool = True) -> tuple[Any, dict[str, NodeRun]]:
    """start -> each of ``branches`` -> join (on the cpu queue); with ``claim_start``, start is claimed here."""
    d = {
        "nodes": [http("start", URL)] + [http(b, URL) for b in branches] + [transform("join")],
        "edges": [edge("start", b) for b in branches] + [edge(b, "join") for b in branches],
        "settings": {"max_parallel_nodes": 100},
    }
    run = services.run_start(workflow=make_workflow(user, d), inputs={}, user=user)
    rows = {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}
    if claim_start:
        assert services.node_claim(node_run_id=rows["start"].id, attempt=1) is not None
    return run, rows


WIDE = [f"m{i}" for i in range(6)]


def _done(nr: NodeRun, output: Any, queue: str | None, successors: Sequence[str] = ()) -> services.Claim | None:
    ok, nxt = services.node_complete_and_claim(
        node_run_id=nr.id,
        attempt=1,
        result=services.Result(kind="success", output=output),
        claim_queues=(queue,) if queue else (),
        successors=successors,
    )
    assert ok
    return nxt


def test_a_successor_then_a_queued_sibling_are_claimed_in_the_completing_commit(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    run, rows = _fan(user)

    # start's result makes a and b ready: a is claimed for this thread in the same commit, b gets a message.
    claim_a = _done(rows["start"], {"x": 1}, "io")
    assert claim_a is not None and claim_a.node_run.node_id == "a"
    assert claim_a.known["start"] == ("succeeded", {"x": 1})  # the predecessor's output came with the claim
    a = NodeRun.objects.get(id=rows["a"].id)
    assert (a.status, a.attempt, a.started_at) == ("running", 1, NodeRun.objects.get(id=rows["start"].id).finished_at)
    sent = [tuple(m["args"]) for m in rec_broker.queued_messages()]
    assert (rows["b"].id, 1) in sent and (rows["a"].id, 1) not in sent

    # a's result makes nothing ready (join waits for b): the thread takes b, still queued, instead.
    claim_b = _done(rows["a"], {"y": 2}, "io")
    assert claim_b is not None and claim_b.node_run.node_id == "b"
    assert NodeRun.objects.get(id=rows["b"].id).status == "running"
    # b's message then finds it taken and does nothing.
    assert services.node_claim(node_run_id=rows["b"].id, attempt=1) is None
    assert RunEvent.objects.filter(run=run, type="node.started", node_id="b").count() == 1

    # b's result makes join ready; it is on the cpu queue, so it goes by message and no claim comes back.
    assert _done(rows["b"], {"z": 3}, "io") is None
    assert NodeRun.objects.get(id=rows["join"].id).status == "queued"


def test_without_inline_siblings_the_sibling_waits_for_its_message(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, settings: Any
) -> None:
    settings.ZYRA_INLINE_SIBLINGS = False
    _, rows = _fan(user)
    claim_a = _done(rows["start"], {"x": 1}, "io")
    assert claim_a is not None and claim_a.node_run.node_id == "a"
    assert _done(rows["a"], {"y": 2}, "io") is None
    assert NodeRun.objects.get(id=rows["b"].id).status == "queued"
    assert services.node_claim(node_run_id=rows["b"].id, attempt=1) is not None


@contextlib.contextmanager
def _run_locked(run_id: Any, hold_s: float) -> Iterator[None]:
    """Another connection holds the run's row lock for ``hold_s`` (or until the block ends, if sooner)."""
    conn = second_connection()
    conn.execute('SELECT 1 FROM "executions_run" WHERE "id" = %s FOR UPDATE', [run_id])
    timer = threading.Timer(hold_s, conn.rollback)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        conn.rollback()
        conn.close()


def test_a_message_whose_attempt_is_no_longer_claimable_is_refused_without_waiting_for_the_run_lock(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    run, rows = _fan(user, claim_start=False)
    start = rows["start"]
    with _run_locked(run.id, hold_s=3.0):  # a claim that waited for it would take 3 s
        began = time.monotonic()
        # A message for another attempt of a queued node: "no" from the unlocked pre-check, at once.
        assert services.node_claim(node_run_id=start.id, attempt=2) is None
        assert time.monotonic() - began < 1.0
    assert services.node_claim(node_run_id=start.id, attempt=1) is not None
    with _run_locked(run.id, hold_s=3.0):  # a claim that waited for it would take 3 s
        began = time.monotonic()
        assert services.node_claim(node_run_id=start.id, attempt=1) is None  # a duplicate: already running
        assert time.monotonic() - began < 1.0
    # A claimable attempt does wait for the lock: the pre-check's "yes" is decided under it.
    _done(start, {"x": 1}, None)
    b = NodeRun.objects.get(id=rows["b"].id)
    assert b.status == "queued"
    with _run_locked(run.id, hold_s=0.6):
        began = time.monotonic()
        assert services.node_claim(node_run_id=b.id, attempt=b.attempt) is not None
        assert time.monotonic() - began >= 0.5


def _sent_ids(broker: RedisServer) -> list[int]:
    return [m["args"][0] for m in broker.queued_messages()]


def test_beyond_the_dispatch_ahead_nodes_are_parked_then_taken_first_or_sent_by_a_completion_that_takes_nothing(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, settings: Any
) -> None:
    settings.ZYRA_DISPATCH_AHEAD = 2
    run, rows = _fan(user, WIDE)
    before = set(_sent_ids(rec_broker))
    # start makes m0..m5 ready: m0 is claimed here, m1 and m2 get messages, m3..m5 are parked.
    claim = _done(rows["start"], {"x": 1}, "io")
    assert claim is not None and claim.node_run.node_id == "m0"
    new = set(_sent_ids(rec_broker)) - before
    assert new == {rows["m1"].id, rows["m2"].id}
    parked = {nr.node_id for nr in NodeRun.objects.filter(run=run, status="queued", dispatched_at__isnull=True)}
    assert parked == {"m3", "m4", "m5"}
    # m0's thread takes a parked sibling, not m1 or m2 (whose messages carry them).
    claim = _done(NodeRun.objects.get(id=rows["m0"].id), {"y": 0}, "io")
    assert claim is not None and claim.node_run.node_id == "m3"
    assert NodeRun.objects.get(id=rows["m3"].id).dispatched_at is not None
    # A completion that takes nothing (its thread's budget spent) hands a parked node a message.
    assert _done(NodeRun.objects.get(id=rows["m3"].id), {"y": 3}, None) is None
    released = set(_sent_ids(rec_broker)) - before - new
    assert released == {rows["m4"].id}
    assert {nr.node_id for nr in NodeRun.objects.filter(run=run, status="queued", dispatched_at__isnull=True)} == {"m5"}


def test_with_no_dispatch_ahead_every_ready_node_gets_a_message(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, settings: Any
) -> None:
    settings.ZYRA_DISPATCH_AHEAD = 0
    run, rows = _fan(user, WIDE)
    before = set(_sent_ids(rec_broker))
    assert _done(rows["start"], {"x": 1}, None) is None
    assert set(_sent_ids(rec_broker)) - before == {rows[f"m{i}"].id for i in range(6)}
    assert not NodeRun.objects.filter(run=run, status="queued", dispatched_at__isnull=True).exists()


def test_the_sweeper_sends_parked_nodes_that_nothing_carries(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, settings: Any
) -> None:
    settings.ZYRA_DISPATCH_AHEAD = 2
    run, rows = _fan(user, WIDE)
    assert _done(rows["start"], {"x": 1}, None) is None  # m0, m1 sent; m2..m5 parked
    assert services.sweep().resent == 0  # m0 and m1's messages carry the parked ones
    # Their messages carry nothing any more (as if lost with their state): the parked ones are stranded.
    NodeRun.objects.filter(run=run, node_id__in=["m0", "m1"]).update(dispatched_at=None)
    before = Counter(_sent_ids(rec_broker))
    assert services.sweep().resent == 2
    assert Counter(_sent_ids(rec_broker)) - before == Counter([rows["m0"].id, rows["m1"].id])  # lowest topological index first


def test_a_completion_reads_what_it_needs_in_the_round_trip_that_takes_the_lock(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _, rows = _fan(user)
    claim_a = _done(rows["start"], {"x": 1}, "io")
    assert claim_a is not None and claim_a.node_run.node_id == "a"
    with CaptureQueriesContext(connection) as queries:
        claim_b = _done(rows["a"], {"y": 2}, "io", ["join"])
    assert claim_b is not None and claim_b.node_run.node_id == "b"
    # Lock + the node + its successor (join) + the queued sibling (b) in one; the writes and COMMIT in the other.
    round_trips = [q["sql"] for q in queries if q["sql"] not in {"BEGIN", "COMMIT"}]  # (Django's own records)
    assert len(round_trips) == 2, [q[:80] for q in round_trips]
    join = NodeRun.objects.get(id=rows["join"].id)
    assert (join.status, join.pending_deps) == ("pending", 1)  # routed from the row read with the lock


def test_a_claim_reads_only_the_run_and_its_node_under_the_lock(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _, rows = _fan(user, claim_start=False)
    with CaptureQueriesContext(connection) as queries:
        assert services.node_claim(node_run_id=rows["start"].id, attempt=1) is not None
    locked = [q["sql"] for q in queries if "FOR UPDATE" in q["sql"]]
    assert len(locked) == 1
    # Two statements (the lock, then the node): none of a completion's prefetches (successors, siblings,
    # waiting or parked nodes), which a claim would never use.
    assert locked[0].count(";") == 1 and "ORDER BY" not in locked[0], locked[0]


def _mixed_fan(user: Any) -> dict[str, NodeRun]:
    """start (io) -> a (io), c (cpu, a DATA_TRANSFORM) -> join; start claimed here."""
    d = {
        "nodes": [http("start", URL), http("a", URL), transform("c"), transform("join")],
        "edges": [edge("start", "a"), edge("start", "c"), edge("a", "join"), edge("c", "join")],
    }
    run = services.run_start(workflow=make_workflow(user, d), inputs={}, user=user)
    rows = {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}
    assert (rows["a"].queue, rows["c"].queue) == ("io", "cpu")
    assert services.node_claim(node_run_id=rows["start"].id, attempt=1) is not None
    return rows


def _complete(nr: NodeRun, queues: tuple[str, ...]) -> services.Claim | None:
    ok, nxt = services.node_complete_and_claim(
        node_run_id=nr.id, attempt=1, result=services.Result(kind="success", output={}), claim_queues=queues
    )
    assert ok
    return nxt


def test_a_thread_serving_both_queues_takes_the_other_queues_sibling_after_its_own(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    rows = _mixed_fan(user)
    # Both became ready: the finished node's own queue (io) comes first.
    claim_a = _complete(rows["start"], ("io", "cpu"))
    assert claim_a is not None and claim_a.node_run.node_id == "a"
    # Nothing became ready after a (join waits for c): the cpu sibling is taken instead of waiting for its message.
    claim_c = _complete(rows["a"], ("io", "cpu"))
    assert claim_c is not None and claim_c.node_run.node_id == "c"
    c = NodeRun.objects.get(id=rows["c"].id)
    assert (c.status, c.attempt) == ("running", 1)
    # Its message, delivered later, finds nothing to claim.
    assert services.node_claim(node_run_id=c.id, attempt=1) is None


def test_a_thread_serving_one_queue_leaves_the_other_queues_sibling_to_its_message(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    rows = _mixed_fan(user)
    claim_a = _complete(rows["start"], ("io",))
    assert claim_a is not None and claim_a.node_run.node_id == "a"
    assert _complete(rows["a"], ("io",)) is None
    assert NodeRun.objects.get(id=rows["c"].id).status == "queued"
    assert rows["c"].id in {m["args"][0] for m in rec_broker.queued_messages("cpu")}


def test_the_queues_a_thread_may_take_from_are_its_own_then_those_its_worker_consumes(settings: Any) -> None:
    from executions.executor import claim_queues
    from zyra.celery import app

    consumed = app.amqp.queues.consume_from
    assert {"io", "cpu", "sweep"} <= set(consumed)  # this process: the defaults, every queue
    assert claim_queues("cpu") == ("cpu", "io")  # never sweep: no node runs there
    assert claim_queues("io") == ("io", "cpu")
    # Only queues the workflow's node types use: an io-only graph reads no cpu siblings under the lock.
    io_only = Graph.from_definition({"nodes": [http("a", URL), http("b", URL)], "edges": [edge("a", "b")]})
    mixed = Graph.from_definition({"nodes": [http("a", URL), node("c", "CALCULATOR", {"operation": "add", "a": 1, "b": 1})], "edges": []})
    assert claim_queues("io", io_only) == ("io",)
    assert claim_queues("io", mixed) == ("io", "cpu")
    settings.ZYRA_INLINE_ANY_QUEUE = False
    assert claim_queues("io") == ("io",)
    settings.ZYRA_INLINE_ANY_QUEUE = True
    queues = app.amqp.queues
    # deselect edits whichever of the two the app uses: both are put back as they were.
    saved = (queues._consume_from and dict(queues._consume_from), dict(queues._default_consume_from))
    queues.deselect("cpu")  # what `-Q io` (or a cancel_consumer) leaves a worker with
    try:
        assert claim_queues("io") == ("io",)
    finally:
        queues._consume_from, queues._default_consume_from = saved
    assert claim_queues("io") == ("io", "cpu")


def test_spare_fan_out_threads_claim_more_ready_successors_in_the_same_commit(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    branches = ("a", "b", "c", "d")
    run, rows = _fan(user, branches)
    ok, claim = services.node_complete_and_claim(
        node_run_id=rows["start"].id,
        attempt=1,
        result=services.Result(kind="success", output={"x": 1}),
        claim_queues=("io",),
        successors=branches,
        spare=2,
    )
    assert ok and claim is not None
    taken = [claim.node_run.node_id] + [c.node_run.node_id for c in claim.extra]
    assert len(taken) == 3 and len(set(taken)) == 3 and set(taken) <= set(branches)
    assert all(c.extra == [] for c in claim.extra)
    assert all(c.known["start"] == ("succeeded", {"x": 1}) for c in [claim, *claim.extra])
    finished = NodeRun.objects.get(id=rows["start"].id).finished_at
    for nid in branches:
        nr = NodeRun.objects.get(id=rows[nid].id)
        if nid in taken:
            assert (nr.status, nr.started_at) == ("running", finished)
        else:
            assert nr.status == "queued"
    # Only the branch left over gets a message; the three claimed ones none.
    sent = [tuple(m["args"]) for m in rec_broker.queued_messages()]
    assert [s for s in sent if s[0] in {rows[b].id for b in branches}] == [(rows[(set(branches) - set(taken)).pop()].id, 1)]
    assert RunEvent.objects.filter(run=run, type="node.started").exclude(node_id="start").count() == 3


def test_spare_threads_take_only_what_became_ready(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    _run, rows = _fan(user, ("a", "b"))
    claim = _done_spare(rows["start"], ("a", "b"), spare=5)
    assert claim is not None and len(claim.extra) == 1  # two ready, five threads offered: two claims
    assert {claim.node_run.node_id, claim.extra[0].node_run.node_id} == {"a", "b"}
    # A completion that readies nothing takes a sibling for its thread as before, and no extra.
    _run2, rows2 = _fan(user, ("a", "b"))
    first = _done(rows2["start"], {}, "io")
    assert first is not None
    second = _done_spare(rows2[first.node_run.node_id], ("join",), spare=3)
    assert second is not None and second.extra == []


def _done_spare(nr: NodeRun, successors: Sequence[str], spare: int) -> services.Claim | None:
    ok, nxt = services.node_complete_and_claim(
        node_run_id=nr.id,
        attempt=nr.attempt or 1,
        result=services.Result(kind="success", output={}),
        claim_queues=("io",),
        successors=successors,
        spare=spare,
    )
    assert ok
    return nxt
