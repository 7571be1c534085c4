"""Restart Redis mid-run: a Redis of our own without persistence, so every queued message is gone.

Nothing re-sends a lost message but the sweeper (it re-sends nodes that stayed
``queued`` longer than ZYRA_REQUEUE_AFTER_S), so every run finishing proves it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from executions import services
from executions.models import NodeRun, Run
from tests.executions.recovery.support import (
    FAST_RECOVERY_ENV,
    TEN_NODE_CALLS,
    RedisServer,
    audit,
    broker,
    free_port,
    jittered,
    ten_node_workflow,
)
from tests.support.factories import make_workflow
from tests.support.servers import LocalServer
from tests.support.workers import ProcessGroup, wait_until

RUNS = 10


@pytest.fixture
def restartable_redis() -> Iterator[RedisServer]:
    srv = RedisServer(free_port(range(6390, 6400)))
    srv.start()
    yield srv
    srv.close()


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_runs_complete_after_a_broker_restart_loses_the_queue(
    process_group: ProcessGroup, restartable_redis: RedisServer, user: Any, server: LocalServer
) -> None:
    jittered(server, low=0.3, high=0.6)
    url = restartable_redis.url()
    process_group.env_extra.update({**FAST_RECOVERY_ENV, "CELERY_BROKER_URL": url, "REDIS_URL": url})
    for i in range(2):
        process_group.start_worker(f"rec-redis-w{i}", pool="threads", concurrency=4)
    process_group.start_beat("rec-redis-beat")
    wf = make_workflow(user, ten_node_workflow(server))
    with broker(url):
        run_ids = [services.run_start(workflow=wf, inputs={"i": i}, user=user).id for i in range(RUNS)]
    # Wait until the workers are busy and a backlog waits in the broker.
    wait_until(
        lambda: NodeRun.objects.filter(run_id__in=run_ids, status="succeeded", type="HTTP_REQUEST").count() >= 4, 60, message="first calls"
    )
    lost = restartable_redis.queued_messages()
    assert lost, "nothing was queued: the restart would prove nothing"
    restartable_redis.restart(down_s=1.0)
    assert restartable_redis.queued_messages() == []

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and Run.objects.filter(id__in=run_ids, status="running").exists():
        time.sleep(0.25)
    result = audit(run_ids, server, TEN_NODE_CALLS)
    assert not result.problems, result.problems[:20]
    assert result.runs == RUNS
    # No worker died: nothing ran twice, every call reached the server exactly once.
    assert result.lost_attempts == 0 and result.repeats == 0, result
    assert result.calls == RUNS * len(TEN_NODE_CALLS)
