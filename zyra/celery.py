"""The Celery app. Transport only: PostgreSQL holds the truth of every run."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zyra.settings")

app = Celery("zyra")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["executions", "workflows", "secrets_vault"])


# Celery's Django fix-up closes the thread's database connection before and
# after every task unless CELERY_DB_REUSE_MAX is set, so every node paid for a
# new PostgreSQL backend (connect, fork, authenticate: several ms of CPU on
# both sides). Connections are kept instead; Django's CONN_MAX_AGE and health
# checks, applied around each task below as around a request, decide when one
# is replaced (with DB_POOL_MAX, CONN_MAX_AGE is 0: the connection goes back
# to the pool after each task).
app.conf.CELERY_DB_REUSE_MAX = 2**31


@task_prerun.connect
@task_postrun.connect
def _db_hygiene(**_: Any) -> None:
    from django.db import close_old_connections

    close_old_connections()
