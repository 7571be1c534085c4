"""Engine vs bare Celery, same broker (Redis), same worker process, same run.

1. Hand-off: a 200-node chain of trivial nodes that go through the worker (DATA_TRANSFORM) vs a bare
   Celery chain of 200 no-ops; and the same chain of instant nodes (CALCULATOR: run where they
   become ready, ZYRA_INSTANT_NODES), which never go through the broker.
2. Windmill's workload: 40 sequential light nodes (CALCULATOR fib(10)) from the API call to the run's end.
3. Fan-out/fan-in: 1 -> 500 trivial worker nodes -> 1 join vs a bare Celery chord of 500; and the
   same with CALCULATORs.
4. Parallel speedup: 8 branches x 4 nodes, each 200 ms of I/O on a local endpoint, vs the critical
   path (0.8 s) and vs sequential mode.

Usage: .venv/bin/python bench/bench_engine.py [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from typing import Any, cast

from common import Workers, bench_user, emit, setup_django, table, wait_run

QUICK = "--quick" in sys.argv
REPEAT = 1 if QUICK else 3


def calc(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "CALCULATOR", "data": {"config": {"operation": "add", "a": 1, "b": 2}}}


def transform(node_id: str) -> dict[str, Any]:
    """A trivial node that a worker runs (DATA_TRANSFORM is not instant)."""
    return {"id": node_id, "type": "DATA_TRANSFORM", "data": {"config": {"source": [1, 2], "operations": [{"op": "limit", "count": 1}]}}}


def chain(make: Any, n: int) -> dict[str, Any]:
    return {
        "nodes": [make(f"n{i}") for i in range(n)],
        "edges": [{"id": f"e{i}", "source": f"n{i}", "target": f"n{i + 1}"} for i in range(n - 1)],
    }


def fan(make: Any, width: int) -> dict[str, Any]:
    return {
        "nodes": [make("start")]
        + [make(f"m{i}") for i in range(width)]
        + [{"id": "join", "type": "MERGE", "data": {"config": {"mode": "list"}}}],
        "edges": [{"id": f"a{i}", "source": "start", "target": f"m{i}"} for i in range(width)]
        + [{"id": f"b{i}", "source": f"m{i}", "target": "join"} for i in range(width)],
        "settings": {"max_parallel_nodes": 1000},
    }


def workflow(user: Any, definition: dict[str, Any]) -> Any:
    from workflows.services import workflow_create

    return workflow_create(owner=user, name=f"bench-{uuid.uuid4().hex[:8]}", definition=definition)


def run_once(user: Any, wf: Any, timeout: float = 600) -> tuple[float, Any]:
    """From the start call to the run's recorded end (``finished_at``), as bare Celery's figures are
    taken from the time its last task records. The run is polled every 10 ms only to learn that it
    ended: a tighter poll would take CPU from the engine on a 2-core machine without changing the figure."""
    from executions import services

    t0 = time.time()
    run = services.run_start(workflow=wf, inputs={}, user=user)
    run = wait_run(run.id, timeout=timeout, poll=0.01)
    return run.finished_at.timestamp() - t0, run


def bare_chain(n: int) -> float:
    import redis
    from bare_tasks import mark, noop
    from celery import chain
    from django.conf import settings

    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    key = f"bench:chain:{uuid.uuid4().hex}"
    sigs = [noop.si().set(queue="cpu") for _ in range(n - 1)] + [mark.si(key=key).set(queue="cpu")]
    t0 = time.time()
    chain(*sigs).apply_async()
    while not r.get(key):
        time.sleep(0.001)
    return float(cast(bytes, r.get(key))) - t0


def bare_chord(n: int) -> float:
    import redis
    from bare_tasks import join, member
    from celery import chord
    from django.conf import settings

    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    key = f"bench:chord:{uuid.uuid4().hex}"
    t0 = time.time()
    chord([member.si(i).set(queue="cpu") for i in range(n)], join.s(key=key).set(queue="cpu")).apply_async()
    while not r.get(key):
        time.sleep(0.002)
    return float(cast(bytes, r.get(key)).decode().split(":")[0]) - t0


def main() -> None:
    backend = "redis://127.0.0.1:6379/11"
    setup_django({"CELERY_RESULT_BACKEND": backend})
    from django.conf import settings

    from tests.support.servers import LocalServer

    server = LocalServer()
    server.slow("/io", 0.2)
    settings.ZYRA_HTTP_ALLOWLIST = ["127.0.0.1"]
    user = bench_user()
    workers = Workers()
    workers.start(1, pool="threads", concurrency=16, include="bench.bare_tasks", extra_env={"CELERY_RESULT_BACKEND": backend})
    figures: dict[str, Any] = {}
    try:
        # 1. hand-off
        n = 200
        wf = workflow(user, chain(transform, n))
        wfi = workflow(user, chain(calc, n))
        run_once(user, wf)  # warm-up
        run_once(user, wfi)
        bare_chain(20)
        eng = [run_once(user, wf)[0] for _ in range(REPEAT)]
        inst = [run_once(user, wfi)[0] for _ in range(REPEAT)]
        bare = [bare_chain(n) for _ in range(REPEAT)]
        eng_ms, bare_ms = statistics.median(eng) / n * 1000, statistics.median(bare) / n * 1000
        inst_ms = statistics.median(inst) / n * 1000
        figures.update(
            handoff_engine_ms_per_node=round(eng_ms, 2),
            handoff_bare_ms_per_hop=round(bare_ms, 2),
            handoff_ratio=round(eng_ms / bare_ms, 2),
            handoff_instant_ms_per_node=round(inst_ms, 3),
            handoff_instant_ratio=round(inst_ms / bare_ms, 3),
        )

        # 2. Windmill: 40 sequential fib(10), from the API call to the run's end
        from rest_framework.test import APIClient

        fib = {
            "nodes": [{"id": f"f{i}", "type": "CALCULATOR", "data": {"config": {"operation": "fibonacci", "n": 10}}} for i in range(40)],
            "edges": [{"id": f"e{i}", "source": f"f{i}", "target": f"f{i + 1}"} for i in range(39)],
        }
        wf40 = workflow(user, fib)
        client = APIClient()
        client.force_authenticate(user)
        times = []
        for _ in range(REPEAT + 1):
            t0 = time.time()
            resp = client.post(f"/api/workflows/{wf40.id}/runs/", {"inputs": {}}, format="json")
            assert resp.status_code == 202, resp.content
            run = wait_run(resp.json()["id"], poll=0.01)
            assert run.status == "succeeded", run.status
            times.append(run.finished_at.timestamp() - t0)
        figures["windmill_40_sequential_s"] = round(statistics.median(times[1:]), 3)

        # 3. fan-out / fan-in 500
        width = 500
        wff = workflow(user, fan(transform, width))
        wffi = workflow(user, fan(calc, width))
        eng = [run_once(user, wff)[0] for _ in range(REPEAT)]
        inst = [run_once(user, wffi)[0] for _ in range(REPEAT)]
        bare = [bare_chord(width) for _ in range(REPEAT)]
        figures.update(
            fanout500_engine_s=round(statistics.median(eng), 3),
            fanout500_bare_chord_s=round(statistics.median(bare), 3),
            fanout500_ratio=round(statistics.median(eng) / statistics.median(bare), 2),
            fanout500_instant_s=round(statistics.median(inst), 3),
            fanout500_instant_ratio=round(statistics.median(inst) / statistics.median(bare), 3),
        )

        # 4. parallel speedup: 8 x 4 nodes of 200 ms I/O
        def branches(sequential: bool) -> dict[str, Any]:
            nodes = [{"id": "start", "type": "MANUAL", "data": {}}]
            edges = []
            for b in range(8):
                for k in range(4):
                    nid = f"b{b}n{k}"
                    nodes.append({"id": nid, "type": "HTTP_REQUEST", "data": {"config": {"url": server.url("/io")}}})
                    src = "start" if k == 0 else f"b{b}n{k - 1}"
                    edges.append({"id": f"{src}->{nid}", "source": src, "target": nid})
            return {"nodes": nodes, "edges": edges, "settings": {"max_parallel_nodes": 16, "sequential": sequential}}

        wfp = workflow(user, branches(False))
        wfs = workflow(user, branches(True))
        par = [run_once(user, wfp)[0] for _ in range(REPEAT)]
        seq = run_once(user, wfs)[0]
        makespan = statistics.median(par)
        figures.update(
            parallel_makespan_s=round(makespan, 3),
            parallel_critical_path_s=0.8,
            parallel_vs_critical_path=round(makespan / 0.8, 2),
            sequential_s=round(seq, 3),
            parallel_speedup_vs_sequential=round(seq / makespan, 2),
        )
    finally:
        workers.stop()
        server.close()

    table(
        "Engine vs bare Celery (same broker, same worker, same run)",
        [
            (
                "hand-off per node (200 chain)",
                f"{figures['handoff_engine_ms_per_node']} ms",
                f"{figures['handoff_bare_ms_per_hop']} ms",
                f"{figures['handoff_ratio']}x",
                "<= 3x",
            ),
            (
                "  instant nodes (CALCULATOR chain)",
                f"{figures['handoff_instant_ms_per_node']} ms",
                f"{figures['handoff_bare_ms_per_hop']} ms",
                f"{figures['handoff_instant_ratio']}x",
                "-",
            ),
            (
                "fan-out/fan-in 500",
                f"{figures['fanout500_engine_s']} s",
                f"{figures['fanout500_bare_chord_s']} s",
                f"{figures['fanout500_ratio']}x",
                "<= 2x",
            ),
            (
                "  instant nodes (CALCULATORs)",
                f"{figures['fanout500_instant_s']} s",
                f"{figures['fanout500_bare_chord_s']} s",
                f"{figures['fanout500_instant_ratio']}x",
                "-",
            ),
            ("40 sequential fib(10), API to end", f"{figures['windmill_40_sequential_s']} s", "-", "-", "< 0.5 s"),
            (
                "8x4 x 200 ms I/O makespan",
                f"{figures['parallel_makespan_s']} s",
                "critical path 0.8 s",
                f"{figures['parallel_vs_critical_path']}x",
                "<= 1.2x",
            ),
            ("  sequential mode", f"{figures['sequential_s']} s", "-", f"speedup {figures['parallel_speedup_vs_sequential']}x", ">= 5x"),
        ],
        ("measure", "engine", "baseline", "ratio", "target"),
    )
    emit(figures)


if __name__ == "__main__":
    main()
