"""Beat tasks for triggers. Thin: each calls one service."""

from __future__ import annotations

import logging

from celery import shared_task

from triggers import services

log = logging.getLogger("triggers.tasks")


@shared_task(name="triggers.fire_due_schedules", ignore_result=True)
def fire_due_schedules() -> int:
    runs = services.schedules_fire_due()
    if runs:
        log.info("triggers.schedules_fired runs=%s", len(runs))
    return len(runs)


@shared_task(name="triggers.prune_webhook_deliveries", ignore_result=True)
def prune_webhook_deliveries() -> int:
    return services.webhook_deliveries_prune()
