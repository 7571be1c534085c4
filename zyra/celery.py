"""The Celery app. Transport only: PostgreSQL holds the truth of every run."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zyra.settings")


def _reuse_kombu_redis_clients() -> None:
    """Make kombu's Redis transport reuse one synchronous client per channel and connection pool.

    kombu 5.7 builds a new ``redis.Redis`` for every publish and every ack
    (``Channel.conn_or_acquire``), and redis-py's constructor is not cheap: it
    fills a dict of some 200 response callbacks. In a 500-wide fan-out that
    was a tenth of a worker's CPU. A ``redis.Redis`` over a connection pool is
    thread-safe (each command borrows a pool connection), so one per channel
    and pool does the same job. The asynchronous client (BRPOP) is untouched:
    kombu keeps that one itself and gives it a connection of its own.
    """
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._create_client
    if getattr(original, "zyra_reused", False):
        return

    def _create_client(self: Any, asynchronous: bool = False) -> Any:
        if asynchronous:
            return original(self, asynchronous)
        pool = self.pool
        cached = self.__dict__.get("_zyra_client")
        if cached is not None and cached[0] is pool:
            return cached[1]
        client = original(self, False)
        self.__dict__["_zyra_client"] = (pool, client)
        return client

    _create_client.zyra_reused = True  # type: ignore[attr-defined]
    kombu_redis.Channel._create_client = _create_client  # type: ignore[method-assign]


_reuse_kombu_redis_clients()

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


@worker_ready.connect
@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Build the outbound HTTP client (its TLS context loads the CA bundle: tens of ms of CPU) before
    the first node needs it, not in the middle of the first burst of calls. A prefork child builds its
    own (the client holds sockets, and is per process)."""
    import logging

    from executions.resilience import safe_http

    try:
        safe_http.warm_up()
    except Exception:  # noqa: BLE001 - a bad CA bundle, say: the first call reports it on its node
        logging.getLogger("zyra.celery").exception("zyra.http_warm_up_failed")
