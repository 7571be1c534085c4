"""Engine slots (executions/gate.py, ZYRA_ENGINE_SLOTS): few threads per process take engine steps
at once, in order of what matters most; handlers run outside them.

The slot itself is plain threading, tested here on real threads. The engine's
use of it runs in a real worker: with one slot, three slow HTTP branches still
call out together (a handler never holds a slot), and the run finishes (their
completions, combined or not, never wait on a slot while holding a lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from executions import gate
from executions.gate import DISPATCHED, FINISH, TIMER, EngineSlots
from executions.tasks import execute_node
from tests.executions.test_fanout_threads import BRANCHES, SLOW_S, _fan_run
from tests.executions.test_split_queues import _only
from tests.support.servers import LocalServer
from tests.support.workers import ProcessGroup
from tests.test_flags import _only_our_workers  # noqa: F401 - autouse fixture: other workers step aside


def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


class _Holder:
    """A thread that holds a slot until told to let go."""

    def __init__(self, slots: EngineSlots) -> None:
        self.go = threading.Event()
        self.held = threading.Event()

        def body() -> None:
            with slots.hold(DISPATCHED):
                self.held.set()
                self.go.wait(10)

        self.thread = threading.Thread(target=body)
        self.thread.start()
        assert self.held.wait(5)

    def release(self) -> None:
        self.go.set()
        self.thread.join(5)


def _step(slots: EngineSlots, kind: int, name: str, served: list[str]) -> threading.Thread:
    """A started thread that takes a slot of ``kind`` and notes ``name`` when it has it."""

    def body() -> None:
        with slots.hold(kind):
            served.append(name)

    t = threading.Thread(target=body)
    t.start()
    return t


def _waiter(slots: EngineSlots, kind: int, name: str, served: list[str]) -> threading.Thread:
    """``_step``, returning once it waits for the slot."""
    before = slots.state()[1]
    t = _step(slots, kind, name, served)
    _until(lambda: slots.state()[1] == before + 1)
    return t


def test_a_free_slot_goes_to_a_hand_off_then_a_completion_then_a_countdown(settings: Any) -> None:
    settings.ZYRA_ENGINE_SLOTS = 1
    settings.ZYRA_ENGINE_SLOT_STALL_MS = 0  # the order itself, however slow this box is
    slots = EngineSlots()
    holder = _Holder(slots)
    served: list[str] = []
    # Arrival order: the countdown first, the hand-off last. FIFO would serve them in that order.
    threads = [
        _waiter(slots, TIMER, "timer", served),
        _waiter(slots, FINISH, "finish", served),
        _waiter(slots, DISPATCHED, "claim", served),
    ]
    holder.release()
    for t in threads:
        t.join(5)
    assert served == ["claim", "finish", "timer"]
    assert slots.state() == (1, 0)


def test_a_countdown_that_waited_past_its_lag_goes_first(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.ZYRA_ENGINE_SLOTS = 1
    settings.ZYRA_ENGINE_SLOT_STALL_MS = 0
    monkeypatch.setitem(gate._LAG_S, TIMER, 0.05)
    slots = EngineSlots()
    holder = _Holder(slots)
    served: list[str] = []
    first = _waiter(slots, TIMER, "timer", served)
    time.sleep(0.1)  # longer than the countdown's lag: it is not starved by hand-offs arriving later
    second = _waiter(slots, DISPATCHED, "claim", served)
    holder.release()
    first.join(5)
    second.join(5)
    assert served == ["timer", "claim"]


@pytest.mark.parametrize("size", [0, 1, 3])
def test_never_more_holders_than_slots_and_none_with_slots_off(settings: Any, size: int) -> None:
    settings.ZYRA_ENGINE_SLOTS = size
    settings.ZYRA_ENGINE_SLOT_STALL_MS = 0
    slots = EngineSlots()
    lock = threading.Lock()
    now, peak = [0], [0]

    def body() -> None:
        with slots.hold(DISPATCHED):
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            time.sleep(0.02)
            with lock:
                now[0] -= 1

    threads = [threading.Thread(target=body) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # Off: all eight at once (the sleeps overlap); on: exactly the slots, all used.
    assert peak[0] == (8 if size == 0 else size)


def test_slots_are_reentrant_resizable_and_never_taken_on_the_main_thread(settings: Any) -> None:
    settings.ZYRA_ENGINE_SLOTS = 1
    settings.ZYRA_ENGINE_SLOT_STALL_MS = 0
    slots = EngineSlots()
    with slots.hold(DISPATCHED):  # the main thread (a prefork child, a test calling a service): no slot
        assert slots.state() == (1, 0)
    served: list[str] = []

    def nested() -> None:
        with slots.hold(FINISH):
            with slots.hold(DISPATCHED):  # a step inside a step: no second slot, no deadlock
                served.append("nested")

    t = threading.Thread(target=nested)
    t.start()
    t.join(5)
    assert served == ["nested"] and slots.state() == (1, 0)

    holder = _Holder(slots)
    first = _waiter(slots, DISPATCHED, "first", served)
    settings.ZYRA_ENGINE_SLOTS = 2
    # The next step to ask sees the new size: the extra slot goes to the one waiting, and the asker queues.
    second = _step(slots, FINISH, "second", served)
    first.join(5)
    # Served while the holder still holds its slot: the resize gave the waiter a slot of its own.
    assert served[:2] == ["nested", "first"]
    holder.release()
    second.join(5)
    assert served == ["nested", "first", "second"] and slots.state() == (2, 0)


@pytest.mark.parametrize("stall_ms", [200, 0])
def test_a_step_stuck_in_its_slot_lets_the_next_go_ahead_after_the_stall_limit(settings: Any, stall_ms: int) -> None:
    """A step waiting inside its slot (another transaction's row lock, a slow statement) holds the
    process's other runs back for at most ZYRA_ENGINE_SLOT_STALL_MS; 0: they wait as long as it does."""
    settings.ZYRA_ENGINE_SLOTS = 1
    settings.ZYRA_ENGINE_SLOT_STALL_MS = stall_ms
    slots = EngineSlots()
    holder = _Holder(slots)  # stuck until released
    served: list[str] = []
    started = time.monotonic()
    waiter = _step(slots, DISPATCHED, "waiter", served)
    waiter.join(1.0)
    if stall_ms:
        assert served == ["waiter"]  # went ahead while the holder was stuck,
        assert time.monotonic() - started >= 0.19  # but only once the holder had held past the limit
    else:
        assert served == []  # still waiting
    holder.release()
    waiter.join(5)
    assert len(served) == 1
    assert slots.state() == (1, 0)  # the slot the stalled step went ahead with was given back


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("countdown", [True, False])
def test_a_countdown_messages_claim_waits_behind_a_hand_off(settings: Any, countdown: bool) -> None:
    """``execute_node`` takes its claim's slot as TIMER when its message had a countdown (``eta``)."""
    settings.ZYRA_ENGINE_SLOTS = 1
    settings.ZYRA_ENGINE_SLOT_STALL_MS = 0
    slots = gate.slots
    holder = _Holder(slots)
    order: list[str] = []

    def task_thread() -> None:
        execute_node.push_request(eta="2026-11-26T00:00:00+00:00" if countdown else None)
        try:
            execute_node(2**62, 1)  # no such node: the claim finds nothing, after its slot
        finally:
            execute_node.pop_request()
            connection.close()
            order.append("task")

    task = threading.Thread(target=task_thread)
    task.start()
    _until(lambda: slots.state()[1] == 1)
    claim = _waiter(slots, DISPATCHED, "hand-off", order)
    holder.release()
    task.join(10)
    claim.join(10)
    # A countdown arrived first but waits; an ordinary message arrived first and goes first.
    assert order == (["hand-off", "task"] if countdown else ["task", "hand-off"])


def test_with_one_slot_slow_branches_still_call_out_together(process_group: ProcessGroup, server: LocalServer, user: Any) -> None:
    process_group.env_extra["ZYRA_ENGINE_SLOTS"] = "1"
    process_group.start_worker("slots-one", pool="threads", concurrency=1)
    _only(["slots-one"])
    rows, arrived = _fan_run(user, server)
    # A handler runs outside the slots: three 0.8 s calls overlap, they are not serialized on the one slot.
    assert arrived[-1] - arrived[0] < SLOW_S / 2, f"the branches did not call out together: {arrived}"
    assert all(rows[b].status == "succeeded" for b in BRANCHES)
    assert rows["join"].status == "succeeded"


def test_a_waiter_interrupted_while_it_waits_leaves_no_slot_behind(settings: Any) -> None:
    """An exception raised in a waiting thread (an asynchronous one, as a time limit raises): the slot
    handed to it meanwhile goes back, and it is not handed another later."""
    import ctypes

    settings.ZYRA_ENGINE_SLOTS = 1
    settings.ZYRA_ENGINE_SLOT_STALL_MS = 0
    slots = EngineSlots()
    holder = _Holder(slots)
    raised: list[BaseException] = []

    class Interrupted(Exception):
        pass

    def body() -> None:
        try:
            with slots.hold(DISPATCHED):
                raised.append(AssertionError("the interrupted step ran"))
        except Interrupted as exc:
            raised.append(exc)

    t = threading.Thread(target=body)
    t.start()
    _until(lambda: slots.state()[1] == 1)
    assert t.ident is not None
    # Pending until the thread next runs Python: when the holder hands it the slot.
    assert ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident), ctypes.py_object(Interrupted)) == 1
    holder.release()
    t.join(5)
    assert len(raised) == 1 and isinstance(raised[0], Interrupted)
    assert slots.state() == (1, 0)
    served: list[str] = []
    _step(slots, DISPATCHED, "after", served).join(2)
    assert served == ["after"], "the slot was lost with the interrupted waiter"
