"""Sending ``execute_node`` messages: one Celery group for everything that became ready."""

from __future__ import annotations

import logging

from celery import group

log = logging.getLogger("executions.dispatch")


def send_many(items: list[tuple[int, int, str, float, int]]) -> None:
    """(node_run_id, attempt, queue, countdown, priority) -> messages.

    Failures are logged, never raised: the rows are committed, and the sweeper
    re-sends queued nodes whose message never arrived.
    """
    from executions.tasks import execute_node

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
