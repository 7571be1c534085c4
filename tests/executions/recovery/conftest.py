"""Recovery tests: workers on a private Redis (so no other test's worker takes our messages), short leases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.executions.recovery.support import FAST_RECOVERY_ENV, RedisServer, broker, free_port
from tests.support.workers import ProcessGroup

# Ports of our own for the Redis servers these tests start (and restart).
REDIS_PORTS = range(6390, 6400)


@pytest.fixture(scope="session")
def private_redis() -> Iterator[RedisServer]:
    srv = RedisServer(free_port(REDIS_PORTS))
    srv.start()
    yield srv
    srv.close()


@pytest.fixture
def rec_broker(private_redis: RedisServer) -> Iterator[RedisServer]:
    """An empty private broker; this process sends the runs' first messages through it."""
    if not private_redis.ping():
        private_redis.start()
    private_redis._client().flushall()
    with broker(private_redis.url()):
        yield private_redis


@pytest.fixture
def rec_group(process_group: ProcessGroup, rec_broker: RedisServer) -> ProcessGroup:
    """Workers (and beat) on the private broker with leases of 3 s and a sweep every second."""
    process_group.env_extra.update(FAST_RECOVERY_ENV)
    process_group.env_extra.update({"CELERY_BROKER_URL": rec_broker.url(), "REDIS_URL": rec_broker.url()})
    return process_group


@pytest.fixture
def fast_leases(settings: Any) -> Any:
    """The same timings for sweeps run in this process."""
    settings.ZYRA_LEASE_S = 3
    settings.ZYRA_REQUEUE_AFTER_S = 3
    settings.ZYRA_WAKE_GRACE_S = 1
    return settings


@pytest.fixture
def no_foreign_sweeper(request: pytest.FixtureRequest, transactional_db: Any) -> Iterator[None]:
    """Pause the suite's shared worker for this test, if a test started it earlier in the session.

    It runs beat, so it sweeps this same database every two seconds and would
    re-send what it finds into its own broker: a test that counts what the
    sweepers do must be the only sweeper. SIGSTOP, not a kill, so it carries
    on afterwards; never while one of its transactions is open (it would
    hold row locks while frozen).
    """
    import os
    import signal
    import time

    from django.db import connection

    defs = request._fixturemanager.getfixturedefs("_worker_group", request.node) or []
    cached = defs[-1].cached_result if defs else None
    group = cached[0] if cached is not None else None
    pids = [p.pid for p in group.procs.values() if p.poll() is None] if isinstance(group, ProcessGroup) else []

    def open_transactions() -> int:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend' AND state <> 'idle'"
            )
            return int(cur.fetchone()[0])

    def signal_all(sig: int) -> None:
        for pid in pids:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass

    for _ in range(50):
        signal_all(signal.SIGSTOP)
        if not pids or open_transactions() == 0:
            break
        signal_all(signal.SIGCONT)
        time.sleep(0.05)
    try:
        yield
    finally:
        signal_all(signal.SIGCONT)
