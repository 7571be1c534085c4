"""Sending ``execute_node`` messages: one Celery group for everything that became ready."""

from __future__ import annotations

import logging
import threading

from celery import group

log = logging.getLogger("executions.dispatch")

# Hand-off fast path. While a worker thread records a node's result it may keep
# ONE of the successors that became ready (same queue, no countdown) and run
# it next itself, instead of a round trip through the broker. The successor is
# claimed through the database like any other attempt, so a crash loses
# nothing: its row is `queued`, and the sweeper re-sends it.
_local = threading.local()


class InlineSlot:
    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.item: tuple[int, int, str, float, int] | None = None

    def __enter__(self) -> InlineSlot:
        _local.slot = self
        return self

    def __exit__(self, *exc: object) -> None:
        _local.slot = None


def _take_inline(items: list[tuple[int, int, str, float, int]]) -> list[tuple[int, int, str, float, int]]:
    slot: InlineSlot | None = getattr(_local, "slot", None)
    if slot is None or slot.item is not None:
        return items
    for i, item in enumerate(items):
        if item[3] <= 0 and item[2] == slot.queue:
            slot.item = item
            return items[:i] + items[i + 1 :]
    return items


def send_many(items: list[tuple[int, int, str, float, int]]) -> None:
    """(node_run_id, attempt, queue, countdown, priority) -> messages.

    Failures are logged, never raised: the rows are committed, and the sweeper
    re-sends queued nodes whose message never arrived.
    """
    from executions.tasks import execute_node

    items = _take_inline(items)
    if not items:
        return
    try:
        now_items = [i for i in items if i[3] <= 0]
        later = [i for i in items if i[3] > 0]
        if len(now_items) == 1:
            nid, attempt, queue, _, priority = now_items[0]
            execute_node.apply_async(args=(nid, attempt), queue=queue, priority=priority)
        elif now_items:
            group(
                execute_node.si(nid, attempt).set(queue=queue, priority=priority) for nid, attempt, queue, _, priority in now_items
            ).apply_async()
        for nid, attempt, queue, countdown, priority in later:
            execute_node.apply_async(args=(nid, attempt), queue=queue, countdown=countdown, priority=priority)
    except Exception:  # noqa: BLE001 - the broker may be down; PostgreSQL keeps the truth
        log.exception("executions.dispatch_failed", extra={"count": len(items)})
