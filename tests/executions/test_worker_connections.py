"""Worker threads keep their PostgreSQL connection from one task to the next.

Celery's Django fix-up closes the thread's connections before and after every
task unless CELERY_DB_REUSE_MAX is set: each node then paid for a new
PostgreSQL backend. This drives the fix-up's own task signals.
"""

from __future__ import annotations

from typing import Any

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from zyra.celery import app


class _Sender:
    class request:  # noqa: N801 - mirrors Celery's task.request
        is_eager = False


@pytest.mark.django_db(transaction=True)
def test_celery_task_boundaries_keep_the_database_connection() -> None:
    fixup = DjangoWorkerFixup(app)
    connection.ensure_connection()
    raw: Any = connection.connection
    pid = raw.info.backend_pid
    for _ in range(3):
        fixup.on_task_prerun(_Sender())
        fixup.on_task_postrun(_Sender())
    assert connection.connection is raw and not raw.closed
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] == pid
