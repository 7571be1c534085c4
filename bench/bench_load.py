"""Load on one host: N runs of a 10-node workflow submitted over the HTTP API to W worker processes.

The workflow: MANUAL -> DELAY -> fan-out {2 x HTTP_REQUEST to a local server, 2 x CALCULATOR}
-> MERGE (fan-in) -> 3 x CALCULATOR in a chain. The DELAY (default 12 s, longer than the
submission window) keeps every run in flight while the rest are submitted, without
occupying a worker.

Everything is on loopback: the API is a real HTTP server in a subprocess
(uvicorn with ``--api-procs`` processes by default, or ``--server daphne``: one process),
the HTTP target is a threaded server in a subprocess of its own, workers are ``celery worker -P threads``
processes (the first one also runs beat, so the sweeper is live).

Printed: runs/s (first submission to last run finished), node hand-off p50/p95
(``NodeRun.dispatched_at`` -> ``NodeRun.started_at``, first-attempt nodes; microseconds, where the
attempt history keeps milliseconds; and for the HTTP nodes alone, as the instant nodes' zeros would
hide theirs), how late the DELAY's wake-up attempt started against its due
time (p50/p95), the true hand-off to the two HTTP branches (their request's arrival at the local
server against the DELAY's finish: one branch runs on the thread that finished the DELAY, the other
on a fan-out thread or by a message), API p95 (client-side),
peak PostgreSQL connections to the bench database (pg_stat_activity, polled every 100 ms),
worker peak RSS (/proc, each worker with its children), peak runs in flight (queued or running), CPU seconds used by the workers, the API server,
PostgreSQL and Redis over the whole run.
The last line is one JSON object.

Usage: .venv/bin/python bench/bench_load.py [--runs 1000] [--workers 4] [--concurrency 8] [--delay 12]
       [--server uvicorn|daphne] [--api-procs 4] [--api-pool 4] [--clients 16] [--rate 0] [--timeout 600] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

os.environ.setdefault("ZYRA_BENCH_DB", "zyra_bench_load")
os.environ.setdefault("ZYRA_BENCH_REDIS_DB", "13")

from common import BENCH_DB, ROOT, Workers, bench_env, bench_user, emit, setup_django, table  # noqa: E402

TERMINAL = ("succeeded", "partially_succeeded", "failed", "cancelled", "timed_out")


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = p * (len(values) - 1)
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TargetServer:
    """The HTTP_REQUEST nodes' endpoint (run in its own process: ``--serve-target``): answers
    {"ok": true} at once and notes when each call (``?run=..&node=..``) arrived - the true start of
    a node, to check the database's timestamps. ``GET /__arrivals``: what it noted, as JSON."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, str, float]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as real servers set it: the headers and the body are two writes, and
            # with Nagle the body waited for the client's delayed ACK (40 ms per call on a
            # reused keep-alive connection).
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                arrived = time.time()
                if self.path == "/__arrivals":
                    with lock:
                        body = json.dumps(outer.arrivals).encode()
                else:
                    query = dict(p.split("=", 1) for p in self.path.partition("?")[2].split("&") if "=" in p)
                    with lock:
                        outer.arrivals.append((query.get("run", ""), query.get("node", ""), arrived))
                    body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]


class Target:
    """The target server in a subprocess: its arrival times are not delayed by this process's
    client threads (one interpreter lock), only by the machine's load like any server's."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-target"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def arrivals(self) -> list[tuple[str, str, float]]:
        import requests

        return [tuple(a) for a in requests.get(f"http://127.0.0.1:{self.port}/__arrivals", timeout=60).json()]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def definition(target_url: str) -> dict[str, Any]:
    def n(node_id: str, type_: str, config: dict[str, Any]) -> dict[str, Any]:
        return {"id": node_id, "type": type_, "data": {"config": config}}

    def calc(node_id: str) -> dict[str, Any]:
        return n(node_id, "CALCULATOR", {"operation": "add", "a": 1, "b": 2})

    nodes = [
        n("start", "MANUAL", {}),
        n("wait", "DELAY", {"seconds": "{{ input.delay }}"}),
        n("fetch", "HTTP_REQUEST", {"url": target_url + "?run={{ run.id }}&node=fetch", "method": "GET"}),
        n("fetch2", "HTTP_REQUEST", {"url": target_url + "?run={{ run.id }}&node=fetch2", "method": "GET"}),
        calc("c1"),
        calc("c2"),
        n("merge", "MERGE", {"mode": "list"}),
        calc("c4"),
        calc("c5"),
        calc("c6"),
    ]
    pairs = [
        ("start", "wait"),
        ("wait", "fetch"),
        ("wait", "c1"),
        ("wait", "c2"),
        ("wait", "fetch2"),
        ("fetch", "merge"),
        ("c1", "merge"),
        ("c2", "merge"),
        ("fetch2", "merge"),
        ("merge", "c4"),
        ("c4", "c5"),
        ("c5", "c6"),
    ]
    edges = [{"id": f"{a}-{b}", "source": a, "target": b} for a, b in pairs]
    return {"nodes": nodes, "edges": edges, "settings": {"max_parallel_nodes": 16}}


def start_api(kind: str, procs: int, port: int, pool: int) -> subprocess.Popen[bytes]:
    logdir = ROOT / "artifacts" / "bench"
    logdir.mkdir(parents=True, exist_ok=True)
    if kind == "daphne":
        args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "zyra.asgi:application"]
    else:
        args = [
            sys.executable,
            "-m",
            "uvicorn",
            "zyra.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(procs),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    log = open(logdir / "load-api.log", "ab")  # noqa: SIM115 - closed with the process
    # Under ASGI every request runs in a new thread: a persistent connection per thread would pile up
    # (CONN_MAX_AGE), so the web process uses Django's psycopg pool (DB_POOL_MAX per process).
    env = bench_env({"DB_POOL_MAX": str(pool)} if pool > 0 else {"DB_CONN_MAX_AGE": "0"})
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_http(url: str, timeout: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


def tree_rss_kib(pid: int) -> int:
    """VmRSS of a process and all its descendants, in KiB (0 once it is gone)."""
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def _cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return out


def cpu_by_part(worker_pids: list[int], api_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the workers, the API server, PostgreSQL and Redis (for a before/after difference).

    PostgreSQL's and Redis's processes are found by name; their CPU includes whatever else uses them.
    """
    parts = {"workers": sum(_cpu_s(p) for w in worker_pids for p in _tree(w)), "api": sum(_cpu_s(p) for p in _tree(api_pid))}
    parts["postgres"] = parts["redis"] = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if name.startswith("postgres"):
            parts["postgres"] += _cpu_s(int(entry.name))
        elif name.startswith("redis-server"):
            parts["redis"] += _cpu_s(int(entry.name))
    return parts


class Poller:
    """Every 100 ms: connections to the bench DB, runs in flight, worker RSS. Own connection, autocommit."""

    def __init__(self, worker_pids: list[int], workflow_id: str) -> None:
        self.worker_pids = worker_pids
        self.workflow_id = workflow_id
        self.peak_conns = 0
        self.peak_in_flight = 0
        self.peak_rss_kib: dict[int, int] = dict.fromkeys(worker_pids, 0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={BENCH_DB}", autocommit=True) as conn:
            while not self.stop.is_set():
                conns = cast(
                    tuple[Any, ...], conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (BENCH_DB,)).fetchone()
                )[0]
                # The poller's own connection is not the application's.
                self.peak_conns = max(self.peak_conns, int(conns) - 1)
                flying = cast(
                    tuple[Any, ...],
                    conn.execute(
                        "SELECT count(*) FROM executions_run WHERE workflow_id = %s AND status IN ('queued', 'running')",
                        (self.workflow_id,),
                    ).fetchone(),
                )[0]
                self.peak_in_flight = max(self.peak_in_flight, int(flying))
                for pid in self.worker_pids:
                    self.peak_rss_kib[pid] = max(self.peak_rss_kib[pid], tree_rss_kib(pid))
                self.stop.wait(0.1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=8, help="threads per worker process")
    ap.add_argument("--delay", type=float, default=12.0, help="DELAY node seconds (keeps runs in flight)")
    ap.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    ap.add_argument("--api-procs", type=int, default=4, help="uvicorn worker processes (Django runs one view at a time per ASGI process)")
    ap.add_argument("--api-pool", type=int, default=4, help="DB_POOL_MAX per API process (0: a connection per request)")
    ap.add_argument("--clients", type=int, default=16, help="client threads submitting runs")
    ap.add_argument(
        "--rate", type=float, default=0.0, help="submit at most this many runs per second, evenly (0: as fast as the API takes them)"
    )
    ap.add_argument("--timeout", type=float, default=600.0, help="bound on the whole wait for the runs")
    ap.add_argument("--quick", action="store_true", help="100 runs, 3 s delay")
    ap.add_argument("--serve-target", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_target:
        server = TargetServer()
        print(server.port, flush=True)
        server.server.serve_forever()
        return
    if args.quick:
        args.runs, args.delay = 100, 3.0

    setup_django()
    import requests
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from workflows.services import workflow_create

    target = Target()
    user = bench_user()
    token, _ = Token.objects.get_or_create(user=user)
    wf = workflow_create(owner=user, name=f"load-{int(time.time())}", definition=definition(f"http://127.0.0.1:{target.port}/ok"))
    connection.close()  # the bench process holds no idle connection during the measurement

    port = free_port()
    api = start_api(args.server, args.api_procs, port, args.api_pool)
    workers = Workers()
    poller: Poller | None = None
    figures: dict[str, Any] = {
        "runs": args.runs,
        "workers": args.workers,
        "threads_per_worker": args.concurrency,
        "api_db_pool": args.api_pool,
        "api_server": f"{args.server} x{1 if args.server == 'daphne' else args.api_procs}",
        "delay_s": args.delay,
        "rate_per_s": args.rate or None,
    }
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        # The local target is this bench's own service: its per-host rate limit (default 100/s) is
        # set above the offered calls, as an operator would for an internal service, so the figures
        # measure the engine, not the limiter's deferrals (tests/resilience cover those).
        workers.start(
            args.workers,
            pool="threads",
            concurrency=args.concurrency,
            beat=True,
            extra_env={"ZYRA_RATE_LIMIT_PER_S": "10000", "ZYRA_RATE_LIMIT_BURST": "10000"},
        )
        poller = Poller([p.pid for p in workers.procs], str(wf.id))
        poller.thread.start()

        url = f"http://127.0.0.1:{port}/api/workflows/{wf.id}/runs/"
        headers = {"Authorization": f"Token {token.key}", "Content-Type": "application/json"}
        local = threading.local()
        latencies: list[float] = []
        errors: list[str] = []
        run_ids: list[str] = []
        lock = threading.Lock()

        def submit(i: int) -> None:
            if args.rate > 0:  # the i-th run is not sent before its slot in an even schedule
                time.sleep(max(0.0, t_start + i / args.rate - time.perf_counter()))
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
            body = json.dumps({"inputs": {"i": i, "delay": args.delay}, "idempotency_key": f"load-{wf.id}-{i}"})
            t0 = time.perf_counter()
            try:
                resp = session.post(url, data=body, headers=headers, timeout=60)
            except requests.RequestException as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if resp.status_code == 202:
                    run_ids.append(resp.json()["id"])
                else:
                    errors.append(f"{resp.status_code}: {resp.text[:200]}")

        cpu_before = cpu_by_part([p.pid for p in workers.procs], api.pid)
        t_start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            list(pool.map(submit, range(args.runs)))
        submit_s = time.perf_counter() - t_start

        # Wait for every run to finish (bounded).
        import psycopg

        deadline = time.monotonic() + args.delay + args.timeout
        done = 0
        with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={BENCH_DB}", autocommit=True) as conn:
            while time.monotonic() < deadline:
                done = cast(
                    tuple[Any, ...],
                    conn.execute(
                        "SELECT count(*) FROM executions_run WHERE workflow_id = %s AND status = ANY(%s)", (str(wf.id), list(TERMINAL))
                    ).fetchone(),
                )[0]
                if done >= len(run_ids):
                    break
                time.sleep(0.2)
            total_s = time.perf_counter() - t_start
            cpu_after = cpu_by_part([p.pid for p in workers.procs], api.pid)
            poller.stop.set()
            poller.thread.join(timeout=5)
            by_status: dict[str, int] = dict(
                conn.execute("SELECT status, count(*) FROM executions_run WHERE workflow_id = %s GROUP BY 1", (str(wf.id),)).fetchall()
            )

            def node_ms(expr: str, where: str) -> list[float]:
                """``expr`` (seconds) in ms for this workflow's node runs ``n`` matching ``where``."""
                sql = f"SELECT extract(epoch FROM ({expr})) * 1000 FROM executions_noderun n JOIN executions_run r ON r.id = n.run_id "
                return [float(row[0]) for row in conn.execute(f"{sql} WHERE r.workflow_id = %s AND {where}", (str(wf.id),)).fetchall()]

            handoff = node_ms(
                "n.started_at - n.dispatched_at", "n.attempt = 1 AND n.dispatched_at IS NOT NULL AND n.started_at IS NOT NULL"
            )
            # The same, for the nodes that go to workers only (the HTTP branches): the instant nodes (7 of
            # 10 here) start in the transaction that makes them ready, and their zeros would hide the rest.
            handoff_http = node_ms(
                "n.started_at - n.dispatched_at",
                "n.type = 'HTTP_REQUEST' AND n.attempt = 1 AND n.dispatched_at IS NOT NULL AND n.started_at IS NOT NULL",
            )
            by_node = conn.execute(
                "SELECT n.node_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY h), percentile_cont(0.95) WITHIN GROUP (ORDER BY h) "
                "FROM (SELECT n.node_id, extract(epoch FROM (n.started_at - n.dispatched_at)) * 1000 AS h "
                "      FROM executions_noderun n JOIN executions_run r ON r.id = n.run_id "
                "      WHERE r.workflow_id = %s AND n.attempt = 1 AND n.started_at IS NOT NULL) n GROUP BY 1 ORDER BY 1",
                (str(wf.id),),
            ).fetchall()
            # A DELAY's wake-up: its second attempt's start against the time it was due (state.until).
            # Under overload the backlog waits somewhere: in the queues (hand-off) or here.
            wake_late = node_ms(
                "(n.attempts->1->>'started_at')::timestamptz - (n.state->>'until')::timestamptz",
                "n.type = 'DELAY' AND jsonb_array_length(n.attempts) >= 2 AND n.state ? 'until'",
            )
            # The true hand-off to the two HTTP branches: their request's arrival at the target against the
            # DELAY's finish (its wake-up's completion). One is taken by the thread that finished the DELAY,
            # the other (ZYRA_FANOUT_THREADS) by a fan-out thread or a message: this checks the database's
            # claim-time started_at, which does not see a branch waiting for a thread.
            wait_done: dict[str, Any] = dict(
                conn.execute(
                    "SELECT r.id::text, extract(epoch FROM (n.attempts->-1->>'finished_at')::timestamptz) FROM executions_noderun n "
                    "JOIN executions_run r ON r.id = n.run_id WHERE r.workflow_id = %s AND n.node_id = 'wait'",
                    (str(wf.id),),
                ).fetchall()
            )
            arrivals = target.arrivals()
            true_start = {
                node: [
                    (arrived - float(wait_done[run_id])) * 1000
                    for run_id, name, arrived in arrivals
                    if name == node and wait_done.get(run_id) is not None
                ]
                for node in ("fetch", "fetch2")
            }
            node_counts: dict[str, int] = dict(
                conn.execute(
                    "SELECT n.status, count(*) FROM executions_noderun n JOIN executions_run r ON r.id = n.run_id "
                    "WHERE r.workflow_id = %s GROUP BY 1",
                    (str(wf.id),),
                ).fetchall()
            )
            max_conn = cast(tuple[Any, ...], conn.execute("SHOW max_connections").fetchone())[0]

        succeeded = int(by_status.get("succeeded", 0))
        figures.update(
            {
                "submitted": len(run_ids),
                "submit_errors": len(errors),
                "submit_s": round(submit_s, 2),
                "submitted_per_s": round(len(run_ids) / submit_s, 1) if submit_s else None,
                "succeeded": succeeded,
                "not_succeeded": {k: v for k, v in by_status.items() if k != "succeeded"},
                "lost": len(run_ids) - int(done),
                "target_calls": len(arrivals),
                "total_s": round(total_s, 2),
                "runs_per_s": round(succeeded / total_s, 1) if total_s else None,
                "node_runs": sum(node_counts.values()),
                "node_statuses": node_counts,
                "handoff_p50_ms": round(pct(handoff, 0.5) or 0, 1),
                "handoff_p95_ms": round(pct(handoff, 0.95) or 0, 1),
                "handoff_max_ms": round(max(handoff, default=0), 1),
                "handoff_http_p50_ms": round(pct(handoff_http, 0.5) or 0, 1),
                "handoff_http_p95_ms": round(pct(handoff_http, 0.95) or 0, 1),
                **{
                    f"true_handoff_{node}_p{q}_ms": round(pct(values, q / 100) or 0, 1)
                    for node, values in true_start.items()
                    for q in (50, 95)
                },
                "delay_wake_late_p50_ms": round(pct(wake_late, 0.5) or 0, 1),
                "delay_wake_late_p95_ms": round(pct(wake_late, 0.95) or 0, 1),
                "api_p50_ms": round((pct(latencies, 0.5) or 0) * 1000, 1),
                "api_p95_ms": round((pct(latencies, 0.95) or 0) * 1000, 1),
                "peak_pg_connections": poller.peak_conns,
                "pg_max_connections": int(max_conn),
                "worker_peak_rss_mib": round(max(poller.peak_rss_kib.values(), default=0) / 1024, 1),
                "workers_peak_rss_total_mib": round(sum(poller.peak_rss_kib.values()) / 1024, 1),
                "peak_runs_in_flight": poller.peak_in_flight,
                "all_succeeded": succeeded == args.runs and not errors,
                # CPU seconds from the first submission to the last run's end, by part (2 cores: 2 s per second).
                **{f"cpu_{k}_s": round(cpu_after[k] - cpu_before[k], 1) for k in cpu_before},
            }
        )
        if errors:
            figures["first_errors"] = errors[:3]
        table("node hand-off by node (ms)", [(n, f"{p50:.0f}", f"{p95:.0f}") for n, p50, p95 in by_node], ("node", "p50", "p95"))
        table("bench_load", [(k, str(v)) for k, v in figures.items() if not isinstance(v, dict)], ("figure", "value"))
        print(f"\nhand-off samples: {len(handoff)}; API calls: {len(latencies)}")
    finally:
        if poller is not None:
            poller.stop.set()
        workers.stop()
        try:
            os.killpg(api.pid, signal.SIGTERM)
            api.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(api.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        target.close()
    emit(figures)


if __name__ == "__main__":
    main()
