"""Celery tasks: thin. They take ids, call one service, return.

``acks_late`` + ``reject_on_worker_lost`` are safe because every service is
idempotent: a duplicate or stale ``execute_node`` finds nothing to claim.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

log = logging.getLogger("executions.tasks")


@shared_task(bind=True, name="executions.execute_node", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_node(self: Any, node_run_id: int, attempt: int) -> None:
    from executions.executor import node_execute
    from executions.gate import DISPATCHED, TIMER

    # A countdown message (a DELAY's wake-up, a retry, a deferral) starts new work: its claim waits
    # behind the runs already moving on this process (executions/gate.py).
    node_execute(node_run_id=node_run_id, attempt=attempt, slot=TIMER if self.request.eta else DISPATCHED)


@shared_task(name="executions.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    from executions.services import sweep as do_sweep

    return do_sweep().as_dict()


@shared_task(name="executions.prune", ignore_result=True)
def prune() -> dict[str, object]:
    """Retention tick (beat): at most ZYRA_RETENTION_MAX_BATCHES batches, then the next tick goes on."""
    from django.conf import settings

    from executions.retention import runs_prune

    return runs_prune(older_than_days=settings.ZYRA_RETENTION_DAYS, max_batches=settings.ZYRA_RETENTION_MAX_BATCHES).as_dict()
