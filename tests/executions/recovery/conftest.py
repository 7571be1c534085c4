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
