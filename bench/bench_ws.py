"""Benchmark: N concurrent WebSocket clients on one run all receive all events.

    .venv/bin/python bench/bench_ws.py --clients 200 --events 100 --interval 0.02
    .venv/bin/python bench/bench_ws.py --engine

Starts uvicorn (the documented production server; ``--server daphne`` for the
other one) with the real ASGI app and the Redis pub/sub channel layer on a
free loopback port, creates a run, connects the clients to
``ws/runs/<id>/?batch=1`` (``--no-batch``: one event per frame) and then, from
a separate process (as a worker would), records events through the engine's
event service (``executions.events.event_record``: commit, then broadcast
through Redis). Prints, over all (client, event) pairs received live, the
delay from commit to receipt (``commit_p50_ms``/``commit_p95_ms``: the commit
time is recorded by bench/ws_commit_probe.py in the committing process) and
from the event's ``ts`` (taken earlier, inside the transaction) to receipt
(``p50_ms``/``p95_ms``). The last line is one JSON object.

Database and Redis: bench/common.py (ZYRA_BENCH_DB, default zyra_bench_ws;
ZYRA_BENCH_REDIS_DB, default 12 — flushed at start). Also printed: the
server's CPU time per delivery (comparable when the machine is shared), the
frames that carried events and the clients' CPU (they share the machine).
``--profile FILE`` runs the server under cProfile.
Not a test: it asserts nothing but reports ``all_received``.

``--engine`` runs a real workflow instead (start -> DELAY -> ``--width``
parallel nodes -> join) on a Celery worker process started here; the clients
connect during the delay and the delays are measured over the events each
client receives live (after its replay).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, cast

os.environ.setdefault("ZYRA_BENCH_DB", "zyra_bench_ws")
os.environ.setdefault("ZYRA_BENCH_REDIS_DB", "12")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Workers, bench_env, emit, setup_django, table  # noqa: E402


def produce(run_id: str, count: int, interval: float) -> None:
    """The producer process: commits events one transaction at a time, broadcast after commit."""
    os.environ.update(bench_env())
    import django

    django.setup()
    import ws_commit_probe  # noqa: F401 - records commit times

    from executions.broadcast import flush
    from executions.events import event_record

    for i in range(count):
        event_record(run_id=run_id, type="node.succeeded", node_id=f"n{i}", data={"status": "succeeded", "attempt": 1, "duration_ms": 1})
        if interval:
            time.sleep(interval)
    flush(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PROFILED = """
import cProfile, runpy, signal, sys
out = sys.argv.pop(1)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
module = sys.argv[2]  # argv: -c -m <module> <args>
sys.argv = [module, *sys.argv[3:]]
prof = cProfile.Profile()
try:
    prof.runcall(runpy.run_module, module, run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    prof.dump_stats(out)
"""


def _start_server(port: int, server: str, profile: str = "", workers: int = 1) -> subprocess.Popen[bytes]:
    env = bench_env({"ZYRA_WS_HEARTBEAT_S": "60"})
    python = [sys.executable]
    if profile:
        # uvicorn re-raises SIGTERM after its graceful shutdown: make that an exit cProfile sees.
        python += ["-c", _PROFILED, profile]
    if server == "uvicorn":
        import importlib.util

        if importlib.util.find_spec("uvicorn") is None:
            raise SystemExit("--server uvicorn needs uvicorn installed (pip install uvicorn)")
        cmd = [
            *python,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--ws-per-message-deflate",
            os.environ.get("ZYRA_BENCH_WS_DEFLATE", "false"),
            "--workers",
            str(workers),
            "zyra.asgi:application",
        ]
    else:
        cmd = [*python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "zyra.asgi:application"]
    # The server's log goes to a file: a pipe nobody reads would fill up and stall it.
    log_path = ROOT / "artifacts" / "logs" / f"bench_ws_{server}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180  # a loaded machine starts Django slowly
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{server} exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):  # noqa: S310 - loopback
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{server} did not start")


def _make_run() -> tuple[str, str]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from executions.models import Run
    from workflows.definition import checksum, normalize
    from workflows.models import Workflow, WorkflowVersion

    user, _ = get_user_model().objects.get_or_create(username="bench-ws")
    token, _ = Token.objects.get_or_create(user=user)
    definition = normalize({"nodes": [{"id": "a", "type": "MANUAL", "data": {}}], "edges": []})
    wf = Workflow.objects.create(owner=user, name=f"bench-ws-{uuid.uuid4().hex[:6]}")
    version = WorkflowVersion.objects.create(
        workflow=wf, number=1, definition=definition, submitted=definition, checksum=checksum(definition), created_by=user
    )
    run = Run.objects.create(workflow=wf, version=version, owner=user, status="running", nodes_total=1)
    return str(run.id), str(token.key)


def _make_engine_run(width: int, delay_s: float) -> tuple[str, str]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from executions import services
    from workflows.definition import checksum, normalize
    from workflows.models import Workflow, WorkflowVersion

    user, _ = get_user_model().objects.get_or_create(username="bench-ws")
    token, _ = Token.objects.get_or_create(user=user)
    nodes: list[dict[str, Any]] = [
        {"id": "start", "type": "MANUAL", "data": {}},
        {"id": "wait", "type": "DELAY", "data": {"config": {"seconds": delay_s}}},
        {"id": "join", "type": "MERGE", "data": {}},
    ]
    edges: list[dict[str, Any]] = [{"id": "s-w", "source": "start", "target": "wait"}]
    for i in range(width):
        nodes.append({"id": f"p{i}", "type": "MERGE", "data": {}})
        edges += [{"id": f"w-p{i}", "source": "wait", "target": f"p{i}"}, {"id": f"p{i}-j", "source": f"p{i}", "target": "join"}]
    definition = normalize({"nodes": nodes, "edges": edges})
    wf = Workflow.objects.create(owner=user, name=f"bench-ws-engine-{uuid.uuid4().hex[:6]}")
    version = WorkflowVersion.objects.create(
        workflow=wf, number=1, definition=definition, submitted=definition, checksum=checksum(definition), created_by=user
    )
    wf.current_version = version
    wf.save(update_fields=["current_version"])
    run = services.run_start(workflow=wf, inputs={}, user=user)
    return str(run.id), str(token.key)


def _cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process and its children (Linux /proc), to compare servers on a shared machine."""
    if pid is None:
        return None
    total = 0.0
    found = False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # the server or one of its worker processes
            found = True
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total if found else None


def _commit_times(run_id: str) -> dict[int, float]:
    """seq -> commit time of the run's events, as recorded by bench/ws_commit_probe.py."""
    out: dict[int, float] = {}
    try:
        lines = COMMIT_LOG.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        rid, seq, at = line.split()
        if rid == run_id:
            out[int(seq)] = float(at)
    return out


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


COMMIT_LOG = ROOT / "artifacts" / "bench" / "ws_commits.log"
TERMINAL = {"run.succeeded", "run.partially_succeeded", "run.failed", "run.cancelled", "run.timed_out"}


async def _client(
    url: str, origin: str, args: argparse.Namespace, ready: asyncio.Event, counter: list[int]
) -> tuple[list[int], list[float], int, dict[int, float]]:
    """One subscriber: (seqs received, delays from ts of the events received live, live frames carrying events, live receipt times)."""
    from websockets.asyncio.client import connect

    seqs: list[int] = []
    delays: list[float] = []
    frames = 0
    received: dict[int, float] = {}
    live = False
    # Live frames are kept raw with their receipt time and parsed after the run: 200 clients
    # in this one process share the machine with the server, and parsing while the events
    # arrive would delay the next receipts by the bench's own CPU, not the server's.
    raw_live: list[tuple[float, str]] = []
    seen = 0
    async with connect(url, origin=cast(Any, origin), open_timeout=60, max_size=2**24) as ws:
        # One timeout around the loop, not wait_for per frame: that wraps every recv in a
        # task, client CPU taken from the server on this shared machine.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.timeout):
                async for raw in ws:
                    now = time.time()
                    if live:
                        text = raw if isinstance(raw, str) else raw.decode()
                        raw_live.append((now, text))
                        if args.engine:
                            if '"type":"run.' in text and any(f'"type":"{t}"' in text for t in TERMINAL):
                                break
                        else:
                            seen += text.count('"seq":')
                            if seen >= args.events:
                                break
                        continue
                    msg = json.loads(raw)
                    if msg.get("type") == "replay.done":
                        live = True
                        seen = len(seqs)
                        counter[0] += 1
                        if counter[0] == args.clients:
                            ready.set()
                        continue
                    events = msg["events"] if msg.get("type") == "batch" else [msg] if "seq" in msg else []
                    seqs += [event["seq"] for event in events]
    for now, text in raw_live:
        msg = json.loads(text)
        events = msg["events"] if msg.get("type") == "batch" else [msg] if "seq" in msg else []
        frames += bool(events)
        for event in events:
            seqs.append(event["seq"])
            delays.append(now - _ts(event["ts"]))
            received[event["seq"]] = now
    return seqs, delays, frames, received


async def _bench(args: argparse.Namespace, ws_base: str, origin: str, run_id: str, token: str) -> dict[str, Any]:
    url = f"{ws_base}/ws/runs/{run_id}/?token={token}&stay_open=1" + ("&batch=1" if args.batch else "")
    ready = asyncio.Event()
    counter = [0]
    tasks = [asyncio.ensure_future(_client(url, origin, args, ready, counter)) for _ in range(args.clients)]
    await asyncio.wait_for(ready.wait(), timeout=120)
    connected_at = time.time()
    cpu_before = _cpu_s(args.server_pid)
    client_cpu_before = time.process_time()
    producer = None
    if not args.engine:
        producer = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--produce", run_id, str(args.events), str(args.interval), cwd=str(ROOT)
        )
    results = await asyncio.gather(*tasks)
    cpu_after = _cpu_s(args.server_pid)
    client_cpu = time.process_time() - client_cpu_before
    if producer is not None:
        await producer.wait()
    expected = args.events
    if args.engine:
        from asgiref.sync import sync_to_async

        from executions.models import Run

        run = await sync_to_async(Run.objects.get)(id=run_id)
        expected = run.event_seq
        if run.started_at and connected_at > run.started_at.timestamp() + args.delay:
            print("warning: the clients connected after the delay; most events were replayed, not live", file=sys.stderr)
    all_delays = sorted(d for _, delays, _, _ in results for d in delays)
    complete = sum(1 for seqs, _, _, _ in results if seqs == list(range(1, expected + 1)))
    live_frames = sum(frames for _, _, frames, _ in results)
    committed = _commit_times(run_id)
    from_commit = sorted(t - committed[seq] for _, _, _, received in results for seq, t in received.items() if seq in committed)

    def pct(p: float, values: list[float] = all_delays) -> float:
        if not values:
            return float("nan")
        return values[min(len(values) - 1, round(p * (len(values) - 1)))] * 1000

    return {
        "bench": "ws_fanout_engine" if args.engine else "ws_fanout",
        "server": "external" if args.url else args.server,
        "clients": args.clients,
        "batch": args.batch,
        "events": expected,
        "interval_s": None if args.engine else args.interval,
        "clients_complete": complete,
        "all_received": complete == args.clients,
        "live_deliveries": len(all_delays),
        "live_frames": live_frames,
        "p50_ms": round(pct(0.50), 2),
        "p95_ms": round(pct(0.95), 2),
        "max_ms": round(all_delays[-1] * 1000, 2) if all_delays else None,
        # The measure: from the commit (on_commit, bench/ws_commit_probe.py) to receipt.
        # The figures above start at the event's ts, taken earlier inside the transaction.
        "commit_p50_ms": round(pct(0.50, from_commit), 2),
        "commit_p95_ms": round(pct(0.95, from_commit), 2),
        "commit_max_ms": round(from_commit[-1] * 1000, 2) if from_commit else None,
        "mean_ms": round(statistics.fmean(all_delays) * 1000, 2) if all_delays else None,
        "connect_s": round(connected_at - args.started, 2),
        "server_cpu_s": round(cpu_after - cpu_before, 2) if cpu_after is not None and cpu_before is not None else None,
        "server_cpu_us_per_delivery": (
            round((cpu_after - cpu_before) / len(all_delays) * 1e6, 1)
            if cpu_after is not None and cpu_before is not None and all_delays
            else None
        ),
        "client_cpu_s": round(client_cpu, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--events", type=int, default=100, help="events committed by the producer process")
    parser.add_argument("--interval", type=float, default=0.02, help="pause between two committed events (s)")
    parser.add_argument("--engine", action="store_true", help="run a real workflow on a Celery worker instead of the producer")
    parser.add_argument("--width", type=int, default=17, help="--engine: parallel nodes (total nodes = width + 3)")
    parser.add_argument("--delay", type=float, default=6.0, help="--engine: DELAY before the fan-out (clients connect meanwhile)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="uvicorn", help="ASGI server to start")
    parser.add_argument(
        "--batch", action=argparse.BooleanOptionalAction, default=True, help="subscribe with ?batch=1 (events together in one frame)"
    )
    parser.add_argument("--url", default="", help="use a running server (http://host:port) instead of starting one")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn: server processes")
    parser.add_argument("--profile", default="", metavar="FILE", help="run the server under cProfile, stats to FILE (slower)")
    parser.add_argument("--produce", nargs=3, metavar=("RUN_ID", "COUNT", "INTERVAL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        produce(args.produce[0], int(args.produce[1]), float(args.produce[2]))
        return

    setup_django()
    COMMIT_LOG.parent.mkdir(parents=True, exist_ok=True)
    COMMIT_LOG.write_text("")
    os.environ["ZYRA_BENCH_COMMIT_LOG"] = str(COMMIT_LOG)  # the producer process inherits it
    workers = Workers()
    procs: list[subprocess.Popen[bytes]] = []
    args.server_pid = None
    try:
        if args.url:
            http = args.url.rstrip("/")
        else:
            port = _free_port()
            procs.append(_start_server(port, args.server, args.profile, args.workers))
            args.server_pid = procs[-1].pid
            http = f"http://127.0.0.1:{port}"
        if args.engine:
            workers.start(1, concurrency=8, include="bench.ws_commit_probe", extra_env={"ZYRA_BENCH_COMMIT_LOG": str(COMMIT_LOG)})
            run_id, token = _make_engine_run(args.width, args.delay)
        else:
            run_id, token = _make_run()
        ws_base = "ws" + http[len("http") :]
        args.started = time.time()
        result = asyncio.run(_bench(args, ws_base, http, run_id, token))
    finally:
        workers.stop()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)
    table(
        f"WebSocket fan-out: {result['clients']} clients on one run ({result['bench']}, {result['server']})",
        [
            (
                str(result["events"]),
                f"{result['clients_complete']}/{result['clients']}",
                str(result["p50_ms"]),
                str(result["p95_ms"]),
                str(result["max_ms"]),
                str(result["commit_p50_ms"]),
                str(result["commit_p95_ms"]),
                str(result["server_cpu_us_per_delivery"]),
                str(result["load_avg_1m"]),
            )
        ],
        (
            "events",
            "clients with all, in order",
            "p50 ms",
            "p95 ms",
            "max ms",
            "commit p50 ms",
            "commit p95 ms",
            "server CPU us/delivery",
            "load 1m",
        ),
    )
    emit(result)


if __name__ == "__main__":
    main()
