"""Engine slots: how many threads of one worker process do engine work at once, and in what order.

A threads-pool worker runs many nodes at once so that nodes waiting on I/O
(an HTTP call, a notification) do not hold up the others. But the engine's
own steps around a node - the claim, and the completion that records the
result, runs the instant nodes that follow and hands on - are CPU work (here
and in PostgreSQL), and when more threads take them at once than the process
gets CPU for, they share it: each takes ``threads x`` its own time. At 1,000
runs waking from a DELAY at once, that put 100-600 ms between a DELAY's
finish and its HTTP call's start.

So each engine step takes a slot (``ZYRA_ENGINE_SLOTS`` per process; 0 =
off). Handlers and the rendering before them run outside the slots, so threads
still wait on I/O by the dozen, but only a few take engine steps at a time,
each at full speed. A free slot goes to the waiter that matters most, not the
first that asked:

- ``DISPATCHED``: the claim of a node's message (its predecessor finished: a
  hand-off in progress, and a short step);
- ``FINISH``: a node's completion (a run already moving on this process);
- ``TIMER``: the claim of a countdown message coming due - a DELAY's wake-up,
  a retry, a deferral - which starts new work rather than finishing work in
  progress, so under overload the backlog waits there, before a run's next
  phase, not between its nodes.

Waiters are ordered by arrival plus a lag per class (``_LAG_S``): one is served
before any waiter of a better class that arrived more than the lag after it,
so a timer is never starved, only held back by at most that much.

Completions of one run that threads of this process record together
(executions/combine.py) take one slot: the thread that records the batch holds
it, those it records for wait without one. A step that retries after a
database error waits between tries outside its slot.

A step runs its transaction inside the slot and never waits for a slot while
holding a database lock, so slots cannot deadlock with row locks. But a step
can wait inside its slot - on another transaction's row lock, a slow
statement - and the steps of every other run in the process would wait
behind it: when every holder has held its slot for ZYRA_ENGINE_SLOT_STALL_MS,
a waiter goes ahead beside them (the process then has one step more in
flight than slots, as it would have had without them, until they finish). Slots are
per process and re-entrant per thread; the main thread (a prefork child, a
test calling a service) never waits for one.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings

DISPATCHED, FINISH, TIMER = 0, 1, 2
# Seconds added to a waiter's arrival, per class, to order the waiters.
_LAG_S = {DISPATCHED: 0.0, FINISH: 0.05, TIMER: 1.0}


class _Waiter:
    __slots__ = ("gone", "granted", "key")

    def __init__(self, key: tuple[float, int]) -> None:
        self.key = key
        self.granted = threading.Event()
        self.gone = False  # it stopped waiting (a stall let it through): skipped when met in the heap

    def __lt__(self, other: _Waiter) -> bool:
        return self.key < other.key


class EngineSlots:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._cap = 0
        self._free = 0
        self._waiters: list[_Waiter] = []
        self._holders: dict[int, float] = {}  # thread ident -> when it took its slot
        self._seq = itertools.count()
        self._local = threading.local()

    @contextmanager
    def hold(self, kind: int) -> Iterator[None]:
        """Take the step that follows in a slot (at once if this thread holds one already)."""
        size = int(settings.ZYRA_ENGINE_SLOTS)
        if size <= 0 or getattr(self._local, "held", False) or threading.current_thread() is threading.main_thread():
            yield
            return
        self._acquire(kind, size)
        self._local.held = True
        try:
            yield
        finally:
            self._local.held = False
            self._release()

    def _acquire(self, kind: int, size: int) -> None:
        me = threading.get_ident()
        with self._lock:
            if self._pid != os.getpid():  # first use in this process (or a forked child)
                self._pid, self._cap, self._free, self._waiters, self._holders = os.getpid(), size, size, [], {}
            elif size != self._cap:  # resized (settings changed): the holders give back to the new size
                self._free, self._cap = self._free + size - self._cap, size
                self._hand_over()
            if self._free > 0 and not self._waiters:
                self._free -= 1
                self._holders[me] = time.monotonic()
                return
            waiter = _Waiter((time.monotonic() + _LAG_S[kind], next(self._seq)))
            heapq.heappush(self._waiters, waiter)
        stall = max(0.0, float(settings.ZYRA_ENGINE_SLOT_STALL_MS)) / 1000.0
        try:
            # A releasing thread hands its slot over directly: nobody barges past the order.
            while not waiter.granted.wait(stall if stall > 0 else None):
                with self._lock:
                    if waiter.granted.is_set():
                        break
                    now = time.monotonic()
                    if self._holders and all(now - t >= stall for t in self._holders.values()):
                        # Every holder has held its slot past the stall limit (a step waiting on a row
                        # lock, a slow statement): this step goes ahead beside them rather than queue
                        # behind them, as it would without slots. Its slot is owed back on release.
                        self._free -= 1
                        self._holders[me] = now
                        waiter.gone = True
                        return
            with self._lock:
                self._holders[me] = time.monotonic()
        except BaseException:
            # Interrupted while waiting (or just after): leave no waiter behind to be handed a slot
            # nobody would give back, and give back the one it holds, if any.
            with self._lock:
                owns = waiter.granted.is_set() or me in self._holders
                waiter.gone = True
                if owns:
                    self._holders.pop(me, None)
                    self._free += 1
                    self._hand_over()
            raise

    def _release(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                self._holders.pop(threading.get_ident(), None)
                self._free += 1
                self._hand_over()

    def _hand_over(self) -> None:
        while self._free > 0 and self._waiters:
            waiter = heapq.heappop(self._waiters)
            if waiter.gone:
                continue
            self._free -= 1
            waiter.granted.set()

    def state(self) -> tuple[int, int]:
        """(slots free, threads waiting) in this process."""
        with self._lock:
            if self._pid != os.getpid():
                return int(settings.ZYRA_ENGINE_SLOTS), 0
            return self._free, sum(1 for w in self._waiters if not w.gone)


slots = EngineSlots()
