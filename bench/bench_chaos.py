"""Chaos: 100 runs of a 10-node workflow while one of 3 workers is SIGKILLed every 2 s and restarted.

    .venv/bin/python bench/bench_chaos.py [--runs 100] [--every 2.0] [--workers 3]

The workflow fans out to four HTTP calls, fans in (MERGE), calls, fans out to
two calls and fans in to a last call; every call is a POST to a local counting
server and carries ``Idempotency-Key: <run>:<node>:<attempt>``. Workers are
prefork with two pool processes; kills alternate between a whole worker
(main process and pool) and one pool process. Beat runs the sweeper every
second; leases are 3 s (ZYRA_LEASE_S), lost messages are re-sent after 3 s.

Prints runs, kills, lost runs (must be 0), nodes not succeeded exactly once,
duplicate side effects (calls the server saw beyond one per (run, node), and
how many of them are NOT explained by an attempt lost with its killed
worker), and the time from a kill to the recovery of each node it hit (the
next attempt's start), p50/p95/max. Last line: one JSON object. Exit status 1
if any invariant broke.

Uses its own database (ZYRA_BENCH_DB, default zyra_bench_chaos) and its own
Redis without persistence on a free port of 6390-6399.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("ZYRA_BENCH_DB", "zyra_bench_chaos")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, bench_env, bench_user, emit, setup_django, table  # noqa: E402
from tests.support.workers import beat_argv, worker_argv  # noqa: E402

REDIS_PORTS = range(6390, 6400)
TIMINGS = {"ZYRA_LEASE_S": "3", "ZYRA_REQUEUE_AFTER_S": "3", "ZYRA_SWEEP_INTERVAL_S": "1", "ZYRA_WAKE_GRACE_S": "1"}
TERMINAL = {"succeeded", "partially_succeeded", "failed", "cancelled", "timed_out"}


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


class Pool:
    """Worker processes by name; each killed one is started again at once."""

    def __init__(self, env: dict[str, str], concurrency: int) -> None:
        self.env = env
        self.concurrency = concurrency
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logdir = ROOT / "artifacts" / "bench"
        self.logdir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.logdir / f"chaos-{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def worker(self, name: str) -> None:
        self._spawn(name, worker_argv(name, pool="prefork", concurrency=self.concurrency))

    def beat(self) -> None:
        self._spawn("beat", beat_argv(self.logdir / f"chaos-beat-schedule-{os.getpid()}"))

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for name in list(self.procs):
            if self.procs[name].poll() is None:
                self.kill(name)


class Chaos(threading.Thread):
    def __init__(self, pool: Pool, names: list[str], every_s: float) -> None:
        super().__init__(daemon=True)
        self.pool, self.names, self.every_s = pool, names, every_s
        self.kills: list[dict[str, Any]] = []  # {"at": epoch s, "pids": [...], "mode": "worker" | "child"}
        self.halt = threading.Event()

    def run(self) -> None:
        rnd = random.Random(6)
        i = 0
        while not self.halt.wait(self.every_s):
            name = self.names[i % len(self.names)]
            mode = "child" if i % 2 else "worker"
            i += 1
            proc = self.pool.procs[name]
            if proc.poll() is not None:
                self.pool.worker(name)
                continue
            kids = children(proc.pid)
            if mode == "child" and kids:
                victim = rnd.choice(kids)
                self.kills.append({"at": time.time(), "pids": [victim], "mode": "child"})
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, signal.SIGKILL)
            else:
                self.kills.append({"at": time.time(), "pids": [proc.pid, *kids], "mode": "worker"})
                self.pool.kill(name)
                self.pool.worker(name)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between kills")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker")
    parser.add_argument("--start-every", type=float, default=0.3, help="seconds between run starts")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    from tests.executions.recovery.support import RedisServer, free_port

    redis_srv = RedisServer(free_port(REDIS_PORTS))
    redis_srv.start()
    broker = redis_srv.url()
    extra = {**TIMINGS, "CELERY_BROKER_URL": broker, "REDIS_URL": broker}
    setup_django(extra)

    from executions import services
    from executions.models import NodeRun, Run
    from tests.executions.recovery.support import TEN_NODE_CALLS, audit, jittered, ten_node_workflow
    from tests.support.factories import make_workflow
    from tests.support.servers import LocalServer

    server = LocalServer()
    jittered(server)
    user = bench_user()
    wf = make_workflow(user, ten_node_workflow(server), name=f"chaos-{int(time.time())}")

    pool = Pool(bench_env(extra), args.concurrency)
    names = [f"chaos{i}" for i in range(args.workers)]
    for name in names:
        pool.worker(name)
    pool.beat()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(len(children(pool.procs[n].pid)) >= args.concurrency for n in names):
        time.sleep(0.2)

    chaos = Chaos(pool, names, args.every)
    t0 = time.monotonic()
    chaos.start()
    run_ids = []
    try:
        for i in range(args.runs):
            run_ids.append(services.run_start(workflow=wf, inputs={"i": i}, user=user).id)
            time.sleep(args.start_every)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if not Run.objects.filter(id__in=run_ids).exclude(status__in=TERMINAL).exists():
                break
            time.sleep(0.5)
    finally:
        chaos.halt.set()
        chaos.join(60)
        elapsed = time.monotonic() - t0
        pool.stop()

    result = audit(run_ids, server, TEN_NODE_CALLS)
    statuses = dict(Run.objects.filter(id__in=run_ids).values_list("id", "status"))
    lost_runs = sum(1 for rid in run_ids if statuses.get(rid) != "succeeded")
    from collections import Counter

    from executions.models import RunEvent

    succeeded_events = Counter(RunEvent.objects.filter(run_id__in=run_ids, type="node.succeeded").values_list("run_id", "node_id"))
    node_keys = list(NodeRun.objects.filter(run_id__in=run_ids).values_list("run_id", "node_id", "status"))
    not_once = sum(1 for r, n, st in node_keys if st != "succeeded" or succeeded_events[(r, n)] != 1)
    unexplained = sum(1 for p in result.problems if "was not lost with its worker" in p or "twice" in p)
    killed_at = {pid: k["at"] for k in chaos.kills for pid in k["pids"]}

    # Time from a kill to the recovery of each node it hit: the kill of the attempt's process -> the next attempt's start.
    recovery: list[float] = []
    detect: list[float] = []  # kill -> the sweeper closes the attempt as worker_lost (lease lapse + sweep)
    redispatch: list[float] = []  # the sweeper's re-queue -> the next attempt starts on a worker
    unmatched = 0
    for history in NodeRun.objects.filter(run_id__in=run_ids).values_list("attempts", flat=True):
        for i, attempt in enumerate(history[:-1]):
            if (attempt.get("error") or {}).get("code") != "worker_lost":
                continue
            pid = int(str(attempt.get("worker", "0:0")).rsplit(":", 1)[1])
            if pid not in killed_at:
                unmatched += 1
                continue
            nxt = next((a for a in history[i + 1 :] if a.get("attempt", 0) > attempt["attempt"]), None)
            if nxt is not None:
                recovery.append(ts(nxt["started_at"]) - killed_at[pid])
                detect.append(ts(attempt["finished_at"]) - killed_at[pid])
                redispatch.append(ts(nxt["started_at"]) - ts(attempt["finished_at"]))

    # For comparison: how long any first attempt waited in the queue (the workers are saturated under chaos).
    queue_wait = [
        ts(history[0]["started_at"]) - dispatched.timestamp()
        for history, dispatched in NodeRun.objects.filter(run_id__in=run_ids, attempt=1).values_list("attempts", "dispatched_at")
        if len(history) == 1 and dispatched is not None
    ]
    kills_worker = sum(1 for k in chaos.kills if k["mode"] == "worker")
    figures = {
        "runs": len(run_ids),
        "succeeded_runs": len(run_ids) - lost_runs,
        "lost_runs": lost_runs,
        "kills": len(chaos.kills),
        "kills_worker": kills_worker,
        "kills_pool_process": len(chaos.kills) - kills_worker,
        "node_runs": result.node_runs,
        "nodes_not_succeeded_once": not_once,
        "calls": result.calls,
        "duplicate_side_effects": result.repeats,
        "duplicates_not_explained_by_a_kill": unexplained,
        "lost_attempts": result.lost_attempts,
        "lost_attempts_of_unkilled_processes": unmatched,
        "recovery_p50_s": round(statistics.median(recovery), 3) if recovery else None,
        "recovery_p95_s": round(percentile(recovery, 0.95), 3) if recovery else None,
        "recovery_max_s": round(max(recovery), 3) if recovery else None,
        "detect_p50_s": round(statistics.median(detect), 3) if detect else None,
        "detect_p95_s": round(percentile(detect, 0.95), 3) if detect else None,
        "redispatch_p50_s": round(statistics.median(redispatch), 3) if redispatch else None,
        "redispatch_p95_s": round(percentile(redispatch, 0.95), 3) if redispatch else None,
        "queue_wait_p50_s": round(statistics.median(queue_wait), 3) if queue_wait else None,
        "queue_wait_p95_s": round(percentile(queue_wait, 0.95), 3) if queue_wait else None,
        "elapsed_s": round(elapsed, 1),
        "lease_s": int(TIMINGS["ZYRA_LEASE_S"]),
        "sweep_interval_s": float(TIMINGS["ZYRA_SWEEP_INTERVAL_S"]),
        "problems": len(result.problems),
    }
    table(
        f"Chaos: 10-node workflow, prefork workers, one SIGKILL every {args.every:g}s",
        [(k, str(v)) for k, v in figures.items()],
        ("figure", "value"),
    )
    for problem in result.problems[:20]:
        print("  problem:", problem)
    emit(figures)
    server.close()
    redis_srv.close()
    return 1 if (lost_runs or result.problems) else 0


if __name__ == "__main__":
    sys.exit(main())
