"""Completions of one run recorded together (executions/combine.py): one transaction, each as if alone.

Like test_inline_claims, no worker consumes this test's broker: nodes are
claimed and completed here (by several threads where the combining itself
is under test), so each row, event and message can be checked.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from django.db import OperationalError, connection

from executions import combine, services
from executions.models import NodeRun, Run, RunEvent
from tests.executions.recovery.support import RedisServer
from tests.support.factories import edge, http, make_workflow, transform
from tests.support.pg import second_connection

URL = "http://127.0.0.1:9/never"  # never called: results are recorded by hand


def _run(user: Any, nodes: list[dict[str, Any]], edges: list[dict[str, Any]], cap: int = 100) -> tuple[Run, dict[str, NodeRun]]:
    d = {"nodes": nodes, "edges": edges, "settings": {"max_parallel_nodes": cap}}
    run = services.run_start(workflow=make_workflow(user, d), inputs={}, user=user)
    return run, {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}


def _fan(user: Any, branches: Sequence[str], cap: int = 100) -> tuple[Run, dict[str, NodeRun]]:
    """start -> branches -> join (DATA_TRANSFORM, on the cpu queue); start's result recorded, every branch claimed."""
    run, rows = _run(
        user,
        [http("start", URL)] + [http(b, URL) for b in branches] + [transform("join")],
        [edge("start", b) for b in branches] + [edge(b, "join") for b in branches],
        cap,
    )
    _claim(rows["start"])
    _complete(rows["start"], {"x": 1})
    for b in branches:
        nr = NodeRun.objects.get(id=rows[b].id)
        if nr.status == "queued":
            _claim(nr)
    return run, rows


def _claim(nr: NodeRun) -> None:
    assert services.node_claim(node_run_id=nr.id, attempt=NodeRun.objects.get(id=nr.id).attempt) is not None


def _complete(nr: NodeRun, output: Any) -> None:
    ok, _ = services.node_complete_and_claim(node_run_id=nr.id, attempt=1, result=services.Result(kind="success", output=output))
    assert ok


def _item(nr: NodeRun, output: Any = None, *, queue: str | None = None, attempt: int = 1, **result: Any) -> services.Completion:
    kind = result.pop("kind", "success")
    return services.Completion(
        nr.id, attempt, services.Result(kind=kind, output=output, **result), claim_queues=(queue,) if queue else (), successors=("join",)
    )


def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _seqs_contiguous(run: Run) -> None:
    seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert Run.objects.get(id=run.id).event_seq == len(seqs)


def test_a_fan_in_completed_in_one_batch_queues_its_join_once(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    run, rows = _fan(user, ["a", "b", "c"])
    out = services._complete_batch(run.id, [_item(rows[b], {"v": b}) for b in ("a", "b", "c")])
    assert [ok for ok, _ in out] == [True, True, True]
    join = NodeRun.objects.get(id=rows["join"].id)
    # Each completion routed from the row as the previous one in the batch left it (not as read with the lock).
    assert (join.status, join.pending_deps, join.attempt) == ("queued", 0, 1)
    assert RunEvent.objects.filter(run=run, type="node.queued", node_id="join").count() == 1
    assert Counter(m["args"][0] for m in rec_broker.queued_messages("cpu"))[join.id] == 1
    assert NodeRun.objects.filter(run=run, node_id__in=["a", "b", "c"], status="succeeded").count() == 3
    r = Run.objects.get(id=run.id)
    assert (r.nodes_done, r.in_flight) == (4, 1)
    _seqs_contiguous(run)


def test_each_completion_of_a_batch_claims_its_own_queued_sibling(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, settings: Any
) -> None:
    settings.ZYRA_DISPATCH_AHEAD = 0
    branches = [f"m{i}" for i in range(6)]
    run, rows = _run(
        user,
        [http("start", URL)] + [http(b, URL) for b in branches] + [transform("join")],
        [edge("start", b) for b in branches] + [edge(b, "join") for b in branches],
    )
    _claim(rows["start"])
    _complete(rows["start"], {"x": 1})
    _claim(rows["m0"])
    _claim(rows["m1"])
    out = services._complete_batch(
        run.id, [_item(rows["m0"], 0, queue="io"), _item(rows["m1"], 1, queue="io"), _item(rows["m5"], 5, queue="io")]
    )
    # m5 was never claimed: its result is not ours to record; the other two each take one queued sibling.
    assert [ok for ok, _ in out] == [True, True, False]
    taken = [claim.node_run.node_id for _, claim in out if claim is not None]
    assert taken == ["m2", "m3"]
    assert set(NodeRun.objects.filter(run=run, status="running").values_list("node_id", flat=True)) == {"m2", "m3"}
    assert RunEvent.objects.filter(run=run, type="node.started", node_id__in=["m2", "m3"]).count() == 2
    _seqs_contiguous(run)


def test_a_stale_attempt_in_a_batch_is_discarded_alone(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    run, rows = _fan(user, ["a", "b"])
    out = services._complete_batch(run.id, [_item(rows["a"], "late", attempt=2), _item(rows["b"], "b")])
    assert [ok for ok, _ in out] == [False, True]
    a, b = NodeRun.objects.get(id=rows["a"].id), NodeRun.objects.get(id=rows["b"].id)
    assert (a.status, b.status, b.output) == ("running", "succeeded", "b")


def test_a_failure_that_stops_the_run_discards_the_rest_of_the_batch(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    run, rows = _fan(user, ["a", "b"])
    failed = _item(rows["a"], kind="error", error={"code": "http_4xx", "message": "bad request"})
    out = services._complete_batch(run.id, [failed, _item(rows["b"], "b")])
    assert [ok for ok, _ in out] == [True, False]  # b's result arrives for a run that has failed
    r = Run.objects.get(id=run.id)
    assert r.status == "failed" and (r.error or {}).get("node_id") == "a"
    statuses = dict(NodeRun.objects.filter(run=run).values_list("node_id", "status"))
    assert statuses == {"start": "succeeded", "a": "failed", "b": "cancelled", "join": "cancelled"}
    _seqs_contiguous(run)


def test_a_slot_freed_later_in_the_batch_goes_to_a_node_made_ready_earlier_in_it(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    # cap 2: a and b run; a's result makes x1 and x2 ready, x1 takes a's slot and x2 waits; b's result
    # frees a slot, which x2 (ready only in this transaction so far) must get.
    run, rows = _run(
        user,
        [http("start", URL), http("a", URL), http("b", URL), http("x1", URL), http("x2", URL)],
        [edge("start", "a"), edge("start", "b"), edge("a", "x1"), edge("a", "x2")],
        cap=2,
    )
    _claim(rows["start"])
    _complete(rows["start"], {})
    _claim(rows["a"])
    _claim(rows["b"])
    out = services._complete_batch(
        run.id,
        [
            services.Completion(rows["a"].id, 1, services.Result(kind="success", output="a"), successors=("x1", "x2")),
            services.Completion(rows["b"].id, 1, services.Result(kind="success", output="b")),
        ],
    )
    assert [ok for ok, _ in out] == [True, True]
    statuses = dict(NodeRun.objects.filter(run=run, node_id__in=["x1", "x2"]).values_list("node_id", "status"))
    assert statuses == {"x1": "queued", "x2": "queued"}
    r = Run.objects.get(id=run.id)
    assert (r.in_flight, r.ready_waiting) == (2, 0)


def _count_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch ``_complete_batch`` records from now on (it still records them)."""
    batches: list[int] = []
    real_batch = services._complete_batch

    def counting(run_id: Any, items: Sequence[services.Completion]) -> list[tuple[bool, services.Claim | None]]:
        batches.append(len(items))
        return real_batch(run_id, items)

    monkeypatch.setattr(services, "_complete_batch", counting)
    return batches


def _completer(run: Run, rows: dict[str, NodeRun], results: dict[str, Any], errors: list[BaseException]) -> Callable[[str], None]:
    """A thread body completing branch ``b`` of ``_fan``'s run (its outcome in ``results``, errors in ``errors``)."""

    def complete(b: str) -> None:
        try:
            results[b] = services.node_complete_and_claim(
                node_run_id=rows[b].id, attempt=1, result=services.Result(kind="success", output=b), successors=("join",), run_id=run.id
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    return complete


def test_threads_completing_one_run_while_its_lock_is_held_are_recorded_in_one_batch(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    branches = ["a", "b", "c", "d"]
    run, rows = _fan(user, branches)
    batches = _count_batches(monkeypatch)
    results: dict[str, tuple[bool, Any]] = {}
    errors: list[BaseException] = []
    complete = _completer(run, rows, results, errors)

    holder = second_connection()
    holder.execute('SELECT 1 FROM "executions_run" WHERE "id" = %s FOR UPDATE', [run.id])
    first = threading.Thread(target=complete, args=("a",))
    first.start()
    _until(lambda: combine.queued(run.id) == 0)  # "a" leads, and waits for the lock in the database
    rest = [threading.Thread(target=complete, args=(b,)) for b in branches[1:]]
    for t in rest:
        t.start()
    _until(lambda: combine.queued(run.id) == 3)  # the others queue behind "a" in this process
    holder.rollback()
    holder.close()
    for t in [first, *rest]:
        t.join(timeout=30)
    assert not errors, errors
    assert {b: ok for b, (ok, _) in results.items()} == dict.fromkeys(branches, True)
    assert batches == [1, 3]  # "a" alone, then the three that queued behind it meanwhile, together
    assert combine.queued(run.id) is None
    join = NodeRun.objects.get(id=rows["join"].id)
    assert (join.status, join.pending_deps) == ("queued", 0)
    assert RunEvent.objects.filter(run=run, type="node.queued", node_id="join").count() == 1
    _seqs_contiguous(run)


def test_with_combining_off_each_completion_has_its_own_transaction(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ZYRA_COMBINE_COMPLETIONS = False
    run, rows = _fan(user, ["a"])
    called: list[Any] = []
    monkeypatch.setattr(combine, "submit", lambda *a, **k: called.append(a))
    ok, _ = services.node_complete_and_claim(
        node_run_id=rows["a"].id, attempt=1, result=services.Result(kind="success", output="a"), run_id=run.id
    )
    assert ok and not called
    assert NodeRun.objects.get(id=rows["join"].id).status == "queued"


# --------------------------------------------------------------------------- the combiner alone


def _gate_first(release: threading.Event) -> Any:
    """A ``one`` callable whose first call waits for ``release`` (so others queue behind it)."""
    calls: list[int] = []

    def one(item: int) -> int:
        calls.append(item)
        if len(calls) == 1:
            release.wait(10)
        return item * 10

    one.calls = calls  # type: ignore[attr-defined]
    return one


def _race(key: str, items: list[int], batch: Any, one: Any, release: threading.Event) -> dict[int, Any]:
    out: dict[int, Any] = {}

    def go(i: int) -> None:
        try:
            out[i] = combine.submit(key, i, batch, one)
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            out[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in items]
    threads[0].start()
    _until(lambda: combine.queued(key) == 0)  # the first leads (and waits for ``release``)
    for t in threads[1:]:
        t.start()
    _until(lambda: combine.queued(key) == len(items) - 1)
    release.set()
    for t in threads:
        t.join(timeout=10)
    assert combine.queued(key) is None
    return out


def test_the_combiner_hands_each_caller_its_own_outcome() -> None:
    release = threading.Event()
    seen: list[list[int]] = []

    def batch(items: Sequence[int]) -> list[int]:
        seen.append(list(items))
        return [i * 10 for i in items]

    out = _race("k1", [1, 2, 3, 4], batch, _gate_first(release), release)
    assert out == {1: 10, 2: 20, 3: 30, 4: 40}
    assert len(seen) == 1 and sorted(seen[0]) == [2, 3, 4]


def test_a_bug_in_a_batch_falls_back_to_one_transaction_per_item() -> None:
    release = threading.Event()
    one = _gate_first(release)

    def batch(items: Sequence[int]) -> list[int]:
        raise ValueError("a bug in one of them")

    def one_or_fail(item: int) -> int:
        if item == 3:
            raise KeyError(item)
        return int(one(item))

    out = _race("k2", [1, 2, 3, 4], batch, one_or_fail, release)
    assert out[1] == 10 and out[2] == 20 and out[4] == 40
    assert isinstance(out[3], KeyError)  # only the bad one fails


def test_a_database_error_reaches_every_caller_of_the_batch() -> None:
    release = threading.Event()

    def batch(items: Sequence[int]) -> list[int]:
        raise OperationalError("server closed the connection unexpectedly")

    out = _race("k3", [1, 2, 3], batch, _gate_first(release), release)
    assert out[1] == 10
    assert isinstance(out[2], OperationalError) and isinstance(out[3], OperationalError)  # each retries its own


def test_a_leader_whose_guard_fails_hands_the_lead_to_the_next_in_line() -> None:
    """The batch leader's guard (its engine slot) raises before it takes its batch: the completion
    queued behind it is still recorded, and later ones for the same run are not left waiting."""
    entered, go = threading.Event(), threading.Event()

    class FailingGuard:
        def __enter__(self) -> None:
            entered.set()
            go.wait(5)
            raise RuntimeError("interrupted while waiting for a slot")

        def __exit__(self, *exc: object) -> None:
            return None

    def batch(items: Sequence[int]) -> list[int]:
        return [i * 10 for i in items]

    def one(item: int) -> int:
        return item * 10

    results: dict[str, Any] = {}

    def leader() -> None:
        try:
            results["leader"] = combine.submit("k-guard", 1, batch, one, guard=FailingGuard)
        except RuntimeError as exc:
            results["leader"] = exc

    def follower() -> None:
        results["follower"] = combine.submit("k-guard", 2, batch, one)

    first = threading.Thread(target=leader)
    first.start()
    assert entered.wait(5)
    second = threading.Thread(target=follower)
    second.start()
    _until(lambda: combine.queued("k-guard") == 2)
    go.set()
    first.join(5)
    second.join(5)
    assert isinstance(results["leader"], RuntimeError)
    assert results["follower"] == 20  # led its own batch once the failed leader stepped aside
    assert combine.queued("k-guard") is None
    assert combine.submit("k-guard", 3, batch, one) == 30  # nothing left wedged


def test_the_waiting_node_a_freed_slot_goes_to_is_read_with_the_lock(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    from django.test.utils import CaptureQueriesContext

    branches = [f"m{i}" for i in range(5)]
    run, rows = _fan(user, branches, cap=2)  # m0 and m1 run; m2..m4 wait for a slot
    assert Run.objects.get(id=run.id).ready_waiting == 3
    with CaptureQueriesContext(connection) as queries:
        out = services._complete_batch(run.id, [_item(rows["m0"], 0), _item(rows["m1"], 1)])
    assert [ok for ok, _ in out] == [True, True]
    round_trips = [q["sql"] for q in queries if q["sql"] not in {"BEGIN", "COMMIT"}]
    assert len(round_trips) == 2, [q[:80] for q in round_trips]  # the lock's read, then the writes with COMMIT
    statuses = dict(NodeRun.objects.filter(run=run, node_id__in=branches).values_list("node_id", "status"))
    assert statuses == {"m0": "succeeded", "m1": "succeeded", "m2": "queued", "m3": "queued", "m4": "pending"}
    r = Run.objects.get(id=run.id)
    assert (r.in_flight, r.ready_waiting) == (2, 1)
    # Alone, too: m2's completion hands its slot to m4 in two round trips.
    _claim(rows["m2"])
    with CaptureQueriesContext(connection) as queries:
        ok, _ = services.node_complete_and_claim(
            node_run_id=rows["m2"].id, attempt=1, result=services.Result(kind="success", output=2), successors=["join"]
        )
    assert ok
    assert len([q for q in queries if q["sql"] not in {"BEGIN", "COMMIT"}]) == 2
    assert NodeRun.objects.get(id=rows["m4"].id).status == "queued"
    assert Run.objects.get(id=run.id).ready_waiting == 0
    _seqs_contiguous(run)


def test_with_one_engine_slot_the_completions_waiting_for_it_are_recorded_in_one_batch(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the thread that records a batch takes an engine slot (executions/gate.py); the completions
    # it records for queue behind it without one. Were each to take a slot first, one slot would make
    # every completion wait for it alone, and they would go one transaction each.
    from executions.gate import slots
    from tests.executions.test_engine_slots import _Holder

    settings.ZYRA_ENGINE_SLOTS = 1
    settings.ZYRA_ENGINE_SLOT_STALL_MS = 0  # the holder below holds as long as it takes
    branches = ["a", "b", "c", "d"]
    run, rows = _fan(user, branches)
    batches = _count_batches(monkeypatch)
    errors: list[BaseException] = []
    complete = _completer(run, rows, {}, errors)

    holder = _Holder(slots)  # another step of this process holds the only slot
    threads = [threading.Thread(target=complete, args=(b,)) for b in branches]
    for t in threads:
        t.start()
    _until(lambda: combine.queued(run.id) == 4)  # the leader waits for the slot, the others behind it
    assert slots.state() == (0, 1)  # one thread waits for the slot: the leader
    holder.release()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert batches == [4]
    join = NodeRun.objects.get(id=rows["join"].id)
    assert (join.status, join.pending_deps) == ("queued", 0)
    _seqs_contiguous(run)
