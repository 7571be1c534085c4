"""Chaos (CI size): 30 runs of a 10-node workflow while a worker is SIGKILLed every 2 s.

Pool choice: prefork with ``-c 2``. Its pool processes are where Celery's
at-least-once delivery really shows: a killed pool process makes the parent
re-queue the message at once (``reject_on_worker_lost``), so the node's
message comes back while its row still says ``running`` for the dead
attempt; killing the whole worker instead leaves its reserved messages
unacknowledged in Redis until the visibility timeout. The chaos alternates
both. A threads pool would only show the second case.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from executions import services
from executions.models import NodeRun, Run
from tests.executions.recovery.support import (
    TEN_NODE_CALLS,
    Chaos,
    audit,
    jittered,
    ten_node_workflow,
    wait_pool_ready,
)
from tests.support.factories import make_workflow
from tests.support.servers import LocalServer
from tests.support.workers import ProcessGroup

RUNS = 30
WORKERS = ["rec-chaos-0", "rec-chaos-1", "rec-chaos-2"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_chaos_every_run_succeeds_every_node_once(rec_group: ProcessGroup, user: Any, server: LocalServer) -> None:
    # Calls of 0.15-0.45 s keep nodes running when the kills land (shorter ones, once the test server stopped
    # adding 40 ms of Nagle delay, let a faster engine finish between kills: 10 kills, no running node hit).
    jittered(server, low=0.15, high=0.45)
    wf = make_workflow(user, ten_node_workflow(server))

    def start_worker(name: str) -> None:
        rec_group.start_worker(name, pool="prefork", concurrency=2)

    for name in WORKERS:
        start_worker(name)
    rec_group.start_beat("rec-chaos-beat")
    for name in WORKERS:
        wait_pool_ready(rec_group, name, 2)

    chaos = Chaos(rec_group, WORKERS, start_worker, every_s=2.0)
    chaos.start()
    t0 = time.monotonic()
    run_ids = []
    try:
        for i in range(RUNS):
            run_ids.append(services.run_start(workflow=wf, inputs={"i": i}, user=user).id)
            time.sleep(0.7)  # the chaos goes on for the whole ~20 s of starts, and after
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if (
                not Run.objects.filter(id__in=run_ids)
                .exclude(status__in=["succeeded", "failed", "cancelled", "timed_out", "partially_succeeded"])
                .exists()
            ):
                break
            time.sleep(0.25)
    finally:
        chaos.stop()
    elapsed = time.monotonic() - t0

    result = audit(run_ids, server, TEN_NODE_CALLS)
    open_nodes = list(
        NodeRun.objects.filter(run_id__in=run_ids).exclude(status="succeeded").values_list("run_id", "node_id", "status", "attempt")[:20]
    )
    report = (
        f"{elapsed:.1f}s, kills={len(chaos.kills)}, lost attempts={result.lost_attempts}, repeats={result.repeats}, "
        f"problems={result.problems[:20]}, open={open_nodes}, chaos errors={chaos.errors}"
    )
    assert not chaos.errors, report
    assert result.runs == RUNS and result.node_runs == RUNS * 10, report
    assert not result.problems, report
    # The chaos must actually have hit running nodes, or it proved nothing.
    assert len(chaos.kills) >= 8 and result.lost_attempts >= 1, report
    # Every attempt closed as worker_lost ran in a process that we killed.
    killed = chaos.killed_pids()
    lost_pids = {int(w.rsplit(":", 1)[1]) for w in result.lost_workers}
    assert lost_pids <= killed, (sorted(lost_pids - killed), report)
    # Repeats at the server are bounded by the lost attempts (a lost attempt may have died before calling).
    assert result.repeats <= result.lost_attempts, report
    print(report)
