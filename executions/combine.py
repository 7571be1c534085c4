"""Flat combining of one run's completions within a worker process.

Every completion takes its run's row lock, so the completions of one run are
serialized by PostgreSQL whatever we do. Without combining, each thread that
finishes a node of a busy run (a fan-out's branches) waits for the lock in
the database and then spends its own two round trips and commit under it.
With combining, a thread that finds another thread of this process already
completing nodes of the same run hands its completion to it and waits on an
event; the one doing the work (the leader) records every completion that has
queued up in one transaction: one lock, one read round trip, one write round
trip and one commit for the batch. A completion with nothing to combine with
pays only a dictionary lookup.

Each completion's outcome (recorded or not, the successor it claims) is what
it would have been in a transaction of its own taken at that point: the batch
applies them one after the other on the same locked state.

Failure: a database error (the connection or the server lost) reaches every
completion of the batch, and each one's caller retries it as it would its own
(completions are idempotent by attempt number). Any other error fails the
batch's transaction, and the leader then records the completions one by one,
each in its own transaction, so that one bad completion fails alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Generic, TypeVar

from django.db import InterfaceError, OperationalError

C = TypeVar("C")
O = TypeVar("O")  # noqa: E741 - the outcome type

MAX_BATCH = 32


class _Request(Generic[C, O]):
    __slots__ = ("done", "error", "item", "lead", "outcome")

    def __init__(self, item: C) -> None:
        self.item = item
        self.done = threading.Event()
        self.lead = False  # set with ``done`` when this request's thread is to lead the next batch
        self.outcome: O | None = None
        self.error: BaseException | None = None


class _Slot:
    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: list[_Request[Any, Any]] = []


_slots: dict[Any, _Slot] = {}  # key -> its queue while some thread leads it
_lock = threading.Lock()


def submit(
    key: Any,
    item: C,
    batch: Callable[[Sequence[C]], list[O]],
    one: Callable[[C], O],
    guard: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> O:
    """Apply ``item`` with whatever else is queued for ``key``; return its outcome (or raise its error).

    ``batch(items)`` applies several in one transaction and returns their
    outcomes in order; ``one(item)`` applies one alone (the fallback).
    ``guard()``: what the leader holds while it applies a batch (an engine slot,
    executions/gate.py); the threads it applies for wait without one.
    """
    request: _Request[C, O] = _Request(item)
    with _lock:
        slot = _slots.get(key)
        leader = slot is None
        if slot is None:
            slot = _slots[key] = _Slot()
        slot.pending.append(request)
    if not leader:
        request.done.wait()
        if not request.lead:
            if request.error is not None:
                raise request.error
            return request.outcome  # type: ignore[return-value]
    taken: list[_Request[Any, Any]] | None = None
    try:
        with guard():
            # This thread leads: its own request is first in the queue (and what queued while it
            # waited for the guard goes in the same batch).
            with _lock:
                taken = slot.pending[:MAX_BATCH]
                del slot.pending[:MAX_BATCH]
            _apply(taken, batch, one)
    except BaseException:
        if taken is None:
            # The guard failed before this thread took its batch: its own request leaves the queue,
            # and the lead passes to what is left (below), not to a request nobody waits on.
            with _lock:
                if request in slot.pending:
                    slot.pending.remove(request)
        raise
    finally:
        with _lock:
            successor = slot.pending[0] if slot.pending else None
            if successor is None:
                del _slots[key]
        if successor is not None:
            successor.lead = True
            successor.done.set()
    if request.error is not None:
        raise request.error
    return request.outcome  # type: ignore[return-value]


def _apply(taken: list[_Request[C, O]], batch: Callable[[Sequence[C]], list[O]], one: Callable[[C], O]) -> None:
    try:
        if len(taken) == 1:
            outcomes = [one(taken[0].item)]
        else:
            outcomes = batch([r.item for r in taken])
    except (OperationalError, InterfaceError) as exc:
        for r in taken:
            r.error = exc
    except BaseException as exc:  # noqa: BLE001 - one bad completion must not fail the others
        if len(taken) == 1:
            taken[0].error = exc
        else:
            for r in taken:
                try:
                    r.outcome = one(r.item)
                except BaseException as own:  # noqa: BLE001 - reported to that completion's caller
                    r.error = own
    else:
        for r, outcome in zip(taken, outcomes, strict=True):
            r.outcome = outcome
    finally:
        for r in taken[1:]:
            r.done.set()


def queued(key: Any) -> int | None:
    """Completions waiting for ``key``'s leader (None: no thread leads ``key``; nothing is left behind)."""
    with _lock:
        slot = _slots.get(key)
        return None if slot is None else len(slot.pending)
