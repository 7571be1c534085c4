"""A fan-out's branches start at once on the worker's fan-out threads (ZYRA_FANOUT_THREADS).

One worker process with a single Celery thread: without fan-out threads, the
three slow branches of a fan-out run one after another (each waits for the
thread); with them, the completion that makes them ready claims all three
and each starts at once. The local server notes when each call arrived.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from executions import services
from executions.executor import FanoutThreads
from executions.models import NodeRun
from tests.executions.test_split_queues import _only, _pid
from tests.support.factories import edge, http, make_workflow, node, wait_run
from tests.support.servers import LocalServer
from tests.support.workers import ProcessGroup
from tests.test_flags import _only_our_workers  # noqa: F401 - autouse fixture: other workers step aside

BRANCHES = ("b1", "b2", "b3")
SLOW_S = 0.8


def _fan_run(user: Any, server: LocalServer, start: dict[str, Any] | None = None) -> tuple[dict[str, NodeRun], list[float]]:
    """``start`` (default: an HTTP node) -> three slow HTTP branches -> join."""
    server.slow("/slow", SLOW_S)
    wf = make_workflow(
        user,
        {
            "nodes": [start or http("start", server.url("/ok"))]
            + [http(b, server.url(f"/slow?b={b}")) for b in BRANCHES]
            + [node("join", "MERGE", {"mode": "list"})],
            "edges": [edge("start", b) for b in BRANCHES] + [edge(b, "join") for b in BRANCHES],
        },
    )
    run = services.run_start(workflow=wf, inputs={}, user=user)
    assert wait_run(run.id, timeout=60).status == "succeeded"
    rows = {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}
    arrived = sorted(r.ts for r in server.requests if r.path.startswith("/slow"))
    assert len(arrived) == len(BRANCHES)
    return rows, arrived


def test_a_fan_out_starts_every_branch_at_once_on_fan_out_threads(process_group: ProcessGroup, server: LocalServer, user: Any) -> None:
    worker = process_group.start_worker("fanout-on", pool="threads", concurrency=1)
    _only(["fanout-on"])
    rows, arrived = _fan_run(user, server)
    # All three calls arrived together, though the worker has one Celery thread and each call takes 0.8 s.
    assert arrived[-1] - arrived[0] < SLOW_S / 2, f"the branches did not start together: {arrived}"
    start = rows["start"]
    for b in BRANCHES:
        # Claimed in the commit that recorded start's result, in this worker.
        assert rows[b].started_at == start.finished_at
        assert _pid(rows[b]) == worker.pid
        assert rows[b].attempt == 1 and len(rows[b].attempts) == 1
    assert rows["join"].output is not None and len(rows["join"].output) == len(BRANCHES)


def test_a_delays_wake_up_starts_every_branch_at_once_on_fan_out_threads(
    process_group: ProcessGroup, server: LocalServer, user: Any
) -> None:
    # The wake-up is claimed, run and completed in one transaction (ZYRA_INSTANT_NODES), which claims
    # the branches with it: one for the Celery thread, the others for fan-out threads held before.
    process_group.start_worker("fanout-delay", pool="threads", concurrency=1)
    _only(["fanout-delay"])
    rows, arrived = _fan_run(user, server, node("start", "DELAY", {"seconds": 0.3}))
    assert arrived[-1] - arrived[0] < SLOW_S / 2, f"the branches did not start together: {arrived}"
    wake = rows["start"]
    assert [a["status"] for a in wake.attempts] == ["deferred", "succeeded"]
    for b in BRANCHES:
        assert rows[b].started_at == wake.finished_at and rows[b].attempt == 1


def test_without_fan_out_threads_the_branches_wait_for_the_one_thread(process_group: ProcessGroup, server: LocalServer, user: Any) -> None:
    process_group.env_extra["ZYRA_FANOUT_THREADS"] = "0"
    process_group.start_worker("fanout-off", pool="threads", concurrency=1)
    _only(["fanout-off"])
    _rows, arrived = _fan_run(user, server)
    # The other state of the flag: one after another (this is what the threads take away).
    assert arrived[-1] - arrived[0] >= 2 * SLOW_S * 0.9, f"the branches ran together without fan-out threads: {arrived}"


@pytest.mark.parametrize("size", [0, 3])
def test_reservations_are_bounded_released_and_never_made_on_a_main_thread(settings: Any, size: int) -> None:
    settings.ZYRA_FANOUT_THREADS = size
    pool = FanoutThreads()
    assert pool.reserve(5) == 0  # the main thread (a prefork child runs its node there): never
    got: list[int] = []

    def worker_thread() -> None:
        got.append(pool.reserve(2))  # up to what is free
        got.append(pool.reserve(5))
        pool.release(got[0] + got[1] - 1)  # one stays taken
        got.append(pool.reserve(5))

    t = threading.Thread(target=worker_thread)
    t.start()
    t.join()
    assert got == ([0, 0, 0] if size == 0 else [2, 1, 2])
