"""A worker takes nodes inline only from the queues it consumes (ZYRA_INLINE_ANY_QUEUE).

Two worker processes: one consumes only ``io``, the other only ``cpu``. An
``io`` node whose successor is a ``cpu`` node must hand that successor to the
``cpu`` worker (through its message), never run it in the ``io`` worker's
thread - while a worker that consumes both takes it inline.
"""

from __future__ import annotations

import time
from typing import Any

from executions import services
from executions.models import NodeRun
from tests.support.factories import edge, http, make_workflow, transform, wait_run
from tests.support.servers import LocalServer
from tests.support.workers import ProcessGroup
from tests.test_flags import _DETACHED, QUEUES, _only_our_workers  # noqa: F401 - autouse fixture: other workers step aside


def _only(names: list[str]) -> None:
    """Wait until every worker in ``names`` answers, then detach all the others from the queues."""
    from zyra.celery import app

    deadline = time.monotonic() + 60
    seen: list[str] = []
    while time.monotonic() < deadline:
        seen = [n for reply in app.control.ping(timeout=1.0) for n in reply]
        if all(any(s.startswith(f"{name}@") for s in seen) for name in names):
            break
    else:
        raise AssertionError(f"workers {names} did not all answer a ping in 60 s: {seen}")
    others = [s for s in seen if not any(s.startswith(f"{name}@") for name in names) and s not in _DETACHED[-1]]
    if others:
        for queue in QUEUES:
            app.control.cancel_consumer(queue, destination=others, reply=True, timeout=2.0)
        _DETACHED[-1].extend(others)


def _pid(nr: NodeRun) -> int:
    return int(nr.worker.rsplit(":", 1)[1])


def _io_then_cpu(user: Any, server: LocalServer) -> Any:
    return make_workflow(
        user,
        {
            "nodes": [http("fetch", server.url("/ok")), transform("calc")],
            "edges": [edge("fetch", "calc")],
        },
    )


def test_an_io_only_worker_leaves_a_cpu_successor_to_the_cpu_worker(process_group: ProcessGroup, server: LocalServer, user: Any) -> None:
    io = process_group.start_worker("split-io", queues="io", pool="threads", concurrency=4)
    cpu = process_group.start_worker("split-cpu", queues="cpu", pool="threads", concurrency=4)
    _only(["split-io", "split-cpu"])
    wf = _io_then_cpu(user, server)
    runs = [services.run_start(workflow=wf, inputs={}, user=user) for _ in range(3)]
    for run in runs:
        assert wait_run(run.id, timeout=60).status == "succeeded"
        rows = {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}
        assert _pid(rows["fetch"]) == io.pid
        assert _pid(rows["calc"]) == cpu.pid, "the cpu node ran in the io-only worker"
        assert rows["calc"].output == {"result": [1]}


def test_a_worker_consuming_both_queues_runs_the_cpu_successor_inline(process_group: ProcessGroup, server: LocalServer, user: Any) -> None:
    both = process_group.start_worker("split-both", queues="io,cpu", pool="threads", concurrency=4)
    _only(["split-both"])
    wf = _io_then_cpu(user, server)
    run = services.run_start(workflow=wf, inputs={}, user=user)
    assert wait_run(run.id, timeout=60).status == "succeeded"
    rows = {nr.node_id: nr for nr in NodeRun.objects.filter(run=run)}
    assert _pid(rows["fetch"]) == _pid(rows["calc"]) == both.pid
    # Claimed in the commit that recorded fetch's result: it started when fetch finished.
    assert rows["calc"].started_at == rows["fetch"].finished_at
