"""Benchmark: N concurrent WebSocket clients on one run all receive all events.

    .venv/bin/python bench/bench_ws.py --clients 200 --events 100 --interval 0.02

Starts daphne (the real ASGI app, Redis pub/sub channel layer) on a free
loopback port, creates a run, connects the clients to ``ws/runs/<id>/`` and
then, from a separate process (as a worker would), records events through the
engine's event service (``executions.events.event_record``: commit, then
broadcast through Redis). Prints the delay from each event's timestamp
(taken in the committing transaction) to its receipt by each client:
p50/p95/max over all (client, event) pairs. The last line is one JSON object.

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/zyra_bench,
created and migrated if missing), REDIS_URL (default redis://127.0.0.1:6379/0).
Not a test: it asserts nothing but reports ``all_received``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zyra.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/zyra_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("CELERY_BROKER_URL", os.environ["REDIS_URL"])
# The bench stores no secrets; a throwaway key ring satisfies the vault's start-up check.
os.environ.setdefault("ZYRA_MASTER_KEYS", "bench:" + base64.b64encode(os.urandom(32)).decode())
os.environ.setdefault("ZYRA_LOG_LEVEL", "WARNING")


def _ensure_database() -> None:
    import psycopg

    from zyra.env import database_from_url

    cfg = database_from_url(os.environ["DATABASE_URL"])
    with psycopg.connect(
        host=str(cfg["HOST"]) or "127.0.0.1",
        port=int(cast(str, cfg["PORT"]) or 5432),
        user=str(cfg["USER"]) or "postgres",
        password=str(cfg["PASSWORD"]) or None,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cfg["NAME"],)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{cfg["NAME"]}"')


def _setup_django() -> None:
    import django

    django.setup()


def produce(run_id: str, count: int, interval: float) -> None:
    """The producer process: commits events one transaction at a time, broadcast after commit."""
    _setup_django()
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


def _start_daphne(port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, ZYRA_WS_HEARTBEAT_S="60")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "zyra.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daphne exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):  # noqa: S310 - loopback
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("daphne did not start")


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


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def _client(
    url: str, origin: str, expected: int, ready: asyncio.Event, counter: list[int], n_clients: int, timeout: float
) -> tuple[list[int], list[float]]:
    from websockets.asyncio.client import connect

    seqs: list[int] = []
    delays: list[float] = []
    async with connect(url, origin=cast(Any, origin), open_timeout=60, max_size=2**24) as ws:
        deadline = time.monotonic() + timeout
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            now = time.time()
            msg = json.loads(raw)
            if msg.get("type") == "replay.done":
                counter[0] += 1
                if counter[0] == n_clients:
                    ready.set()
                continue
            if "seq" not in msg:
                continue
            seqs.append(msg["seq"])
            delays.append(now - _ts(msg["ts"]))
            if msg["seq"] >= expected:
                break
    return seqs, delays


async def _bench(args: argparse.Namespace, ws_base: str, origin: str, run_id: str, token: str) -> dict[str, Any]:
    url = f"{ws_base}/ws/runs/{run_id}/?token={token}&stay_open=1"
    ready = asyncio.Event()
    counter = [0]
    tasks = [
        asyncio.ensure_future(_client(url, origin, args.events, ready, counter, args.clients, args.timeout)) for _ in range(args.clients)
    ]
    await asyncio.wait_for(ready.wait(), timeout=120)
    connected_at = time.time()
    producer = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--produce",
        run_id,
        str(args.events),
        str(args.interval),
        cwd=str(ROOT),
    )
    results = await asyncio.gather(*tasks)
    await producer.wait()
    all_delays = sorted(d for _, delays in results for d in delays)
    complete = sum(1 for seqs, _ in results if seqs == list(range(1, args.events + 1)))

    def pct(p: float) -> float:
        if not all_delays:
            return float("nan")
        return all_delays[min(len(all_delays) - 1, round(p * (len(all_delays) - 1)))] * 1000

    return {
        "bench": "ws_fanout",
        "clients": args.clients,
        "events": args.events,
        "interval_s": args.interval,
        "clients_complete": complete,
        "all_received": complete == args.clients,
        "deliveries": len(all_delays),
        "p50_ms": round(pct(0.50), 2),
        "p95_ms": round(pct(0.95), 2),
        "max_ms": round(all_delays[-1] * 1000, 2) if all_delays else None,
        "mean_ms": round(statistics.fmean(all_delays) * 1000, 2) if all_delays else None,
        "connect_s": round(connected_at - args._started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.02, help="pause between two committed events (s)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--url", default="", help="use a running server (http://host:port) instead of starting daphne")
    parser.add_argument("--produce", nargs=3, metavar=("RUN_ID", "COUNT", "INTERVAL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        produce(args.produce[0], int(args.produce[1]), float(args.produce[2]))
        return

    _ensure_database()
    _setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    run_id, token = _make_run()
    proc = None
    if args.url:
        http = args.url.rstrip("/")
    else:
        port = _free_port()
        proc = _start_daphne(port)
        http = f"http://127.0.0.1:{port}"
    ws_base = "ws" + http[len("http") :]
    args._started = time.time()
    try:
        result = asyncio.run(_bench(args, ws_base, http, run_id, token))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"{result['clients']} clients x {result['events']} events: {result['clients_complete']} clients received all, in order")
    print(f"delay commit -> receipt: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, max {result['max_ms']} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
