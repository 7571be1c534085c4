"""Webhook intake under load: signed deliveries at a fixed rate against a live ASGI server.

Open loop: delivery i is sent at t0 + i/rate whatever happened to the earlier
ones (a closed loop would hide queueing). Each delivery is signed with the
Standard Webhooks reference library and carries a unique webhook-id. Afterwards
the database is checked: every accepted delivery made exactly one run, and no
delivery was lost.

    .venv/bin/python bench/bench_webhooks.py [--rate 200] [--seconds 10] [--workers 0] [--server uvicorn|daphne] [--web 2]

Uses its own database (ZYRA_BENCH_DB, default zyra_bench_webhooks) and Redis db
(ZYRA_BENCH_REDIS_DB, default 11). ``--workers N`` also runs N Celery worker
processes so the runs execute (by default they stay queued: intake is measured).
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

os.environ.setdefault("ZYRA_BENCH_DB", "zyra_bench_webhooks")
os.environ.setdefault("ZYRA_BENCH_REDIS_DB", "11")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, Workers, bench_env, setup_django, table  # noqa: E402

# A fresh signing secret per benchmark run (stored in the vault by setup, used by the client here).
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _uvicorn_impl() -> str:
    """httptools + uvloop when installed (requirements-dev.txt), else uvicorn's pure-Python h11 + asyncio."""
    import importlib.util

    fast = all(importlib.util.find_spec(m) is not None for m in ("httptools", "uvloop"))
    return "httptools+uvloop" if fast else "h11+asyncio"


def _server_argv(server: str, fd: int) -> list[str]:
    if server == "uvicorn":
        # Access log off, as in production behind a proxy.
        impl = (
            ["--http", "httptools", "--loop", "uvloop"] if _uvicorn_impl() == "httptools+uvloop" else ["--http", "h11", "--loop", "asyncio"]
        )
        return [sys.executable, "-m", "uvicorn", "--fd", str(fd), *impl, "--no-access-log"]
    return [sys.executable, "-m", "daphne", "--fd", str(fd)]


def _start_servers(sock: socket.socket, n: int, server: str, env_extra: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """``n`` server processes accepting on one shared listening socket (the kernel spreads connections)."""
    port = sock.getsockname()[1]
    procs = []
    env = bench_env(env_extra)
    for i in range(n):
        log = open(ROOT / "artifacts" / "bench" / f"{server}-webhooks-{i}.log", "ab")  # noqa: SIM115 - lives with the process
        procs.append(
            subprocess.Popen(
                [*_server_argv(server, sock.fileno()), "zyra.asgi:application"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(sock.fileno(),),
            )
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"{server} exited; see artifacts/bench/{server}-webhooks-*.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):  # noqa: S310 - loopback
                time.sleep(1.0 if n > 1 else 0)  # let the other processes finish starting too
                return procs
        except OSError:
            time.sleep(0.1)
    for p in procs:
        p.kill()
    raise SystemExit(f"{server} did not start")


def _cpu_s(pids: list[int]) -> float:
    """User+system CPU seconds of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def _make_endpoint() -> Any:
    from bench.common import bench_user
    from tests.support.factories import make_workflow, node
    from triggers import services

    wf = make_workflow(bench_user(), {"nodes": [node("hook", "WEBHOOK")], "edges": []}, name=f"bench-webhooks-{uuid.uuid4().hex[:6]}")
    [endpoint] = services.webhook_endpoint_ensure(wf)
    services.webhook_signing_secret_add(endpoint=endpoint, value=SECRET)
    endpoint.rate_limit_per_s = 0  # measuring intake, not the limiter
    endpoint.save()
    return endpoint


@lru_cache(maxsize=1)
def _signer() -> Any:
    from standardwebhooks.webhooks import Webhook

    return Webhook(SECRET)


def _sign(msg_id: str, body: bytes) -> dict[str, str]:
    now = datetime.now(tz=UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": _signer().sign(msg_id=msg_id, timestamp=now, data=body.decode()),
    }


class RawClient:
    """A minimal HTTP/1.1 keep-alive client (Content-Length bodies only) for the load.

    httpx spends several ms of CPU per request, more than the server under test,
    on a box whose two cores the client shares with the server. This one does
    the least a client can: one request line, headers, the body, then the
    status line, headers and Content-Length bytes of the answer. Any transport
    error is that delivery's failure (status 0), never retried.
    """

    # Idle connections are not reused after this long: servers close them after
    # their keep-alive timeout (uvicorn: 5 s), and a request written into a
    # connection the server is closing is lost in transit.
    KEEPALIVE_S = 2.0

    def __init__(self, host: str, port: int, max_connections: int = 256) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(max_connections)

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            since, reader, writer = self.idle.pop()
            if time.monotonic() - since < self.KEEPALIVE_S and not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        async with self.slots:
            reader, writer = await self._connection()
            try:
                head = f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-length: {len(body)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
                writer.write(head.encode("latin1") + body)
                status_line = await reader.readline()
                status = int(status_line.split(b" ", 2)[1])
                length, close = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                content = await reader.readexactly(length)
            except BaseException:
                writer.close()
                raise
            if close:
                writer.close()
            else:
                self.idle.append((time.monotonic(), reader, writer))
            return status, content

    def close(self) -> None:
        for _, _, writer in self.idle:
            writer.close()


async def _load(url: str, rate: float, seconds: float, prefix: str, client_kind: str = "raw") -> list[dict[str, Any]]:
    import httpx

    parsed = urllib.parse.urlsplit(url)
    total = int(rate * seconds)
    results: list[dict[str, Any]] = []
    raw = RawClient(parsed.hostname or "127.0.0.1", parsed.port or 80)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:

        async def post(body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
            if client_kind == "httpx":
                resp = await client.post(url, content=body, headers=headers)
                return resp.status_code, resp.json() if resp.status_code == 202 else resp.text[:200]
            status, content = await asyncio.wait_for(raw.post(parsed.path, headers, body), timeout=60.0)
            return status, json.loads(content) if status == 202 else content[:200].decode(errors="replace")

        async def one(i: int, at: float) -> None:
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            msg_id = f"{prefix}-{i}"
            body = json.dumps({"seq": i, "event": "bench.delivery", "data": {"n": i, "tags": ["a", "b"]}}).encode()
            headers = _sign(msg_id, body)
            started = time.perf_counter()
            try:
                status, payload = await post(body, headers)
            except (httpx.HTTPError, OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError) as exc:
                status, payload = 0, repr(exc)
            results.append(
                {
                    "i": i,
                    "status": status,
                    "ms": (time.perf_counter() - started) * 1000,
                    "sent": started,
                    "done": time.perf_counter(),
                    "body": payload,
                }
            )

        t0 = time.perf_counter() + 0.2
        await asyncio.gather(*(one(i, t0 + i / rate) for i in range(total)))
    raw.close()
    return results


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=0, help="Celery worker processes executing the runs (default none)")
    parser.add_argument("--web", type=int, default=2, help="server processes sharing the listening socket (default 2)")
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn", help="ASGI server (default uvicorn)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load client (default: a minimal HTTP/1.1 client)")
    parser.add_argument(
        "--django-path", action="store_true", help="serve deliveries through Django's request cycle (ZYRA_WEBHOOK_FAST_PATH=false)"
    )
    args = parser.parse_args()

    (ROOT / "artifacts" / "bench").mkdir(parents=True, exist_ok=True)
    setup_django()
    from executions.models import Run
    from triggers.models import WebhookDelivery

    endpoint = _make_endpoint()
    workers = Workers()
    if args.workers:
        workers.start(n=args.workers)
    sock = _listen()
    env_extra = {"ZYRA_WEBHOOK_FAST_PATH": "false"} if args.django_path else {}
    servers = _start_servers(sock, args.web, args.server, env_extra)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}{endpoint.path}"
    try:
        _run(_load(url, rate=10, seconds=1, prefix="warmup", client_kind=args.client))  # first requests load code and connections
        prefix = f"d{uuid.uuid4().hex[:8]}"
        cpu_before = _cpu_s([p.pid for p in servers])
        client_before = time.process_time()
        results = _run(_load(url, rate=args.rate, seconds=args.seconds, prefix=prefix, client_kind=args.client))
        client_cpu = time.process_time() - client_before
        server_cpu = _cpu_s([p.pid for p in servers]) - cpu_before
    finally:
        for proc in servers:
            proc.terminate()
        for proc in servers:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        sock.close()
        workers.stop()

    server_name = f"uvicorn ({_uvicorn_impl()})" if args.server == "uvicorn" else args.server
    sent = len(results)
    accepted = [r for r in results if r["status"] == 202]
    others: dict[int, int] = {}
    for r in results:
        if r["status"] != 202:
            others[r["status"]] = others.get(r["status"], 0) + 1
    lat = sorted(r["ms"] for r in results)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else 0.0

    span = max(r["done"] for r in results) - min(r["sent"] for r in results)
    run_ids = [r["body"]["run_id"] for r in accepted]
    runs = Run.objects.filter(workflow_id=endpoint.workflow_id, idempotency_key__contains=f":{prefix}-")
    runs_in_db = runs.count()
    found = set(map(str, runs.values_list("id", flat=True)))
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint, delivery_id__startswith=f"{prefix}-").count()
    duplicates = len(run_ids) - len(set(run_ids))
    lost = sent - len(accepted)
    missing_runs = len(set(run_ids) - found)
    correct = lost == 0 and duplicates == 0 and missing_runs == 0 and runs_in_db == len(accepted) == deliveries
    rate_met = len(accepted) / span >= 0.95 * args.rate
    load = os.getloadavg()

    table(
        f"Webhook intake: {args.rate:g}/s for {args.seconds:g} s, {args.web} {server_name} process(es) on loopback"
        + (" (Django request cycle)" if args.django_path else "")
        + f", {args.client} client",
        [
            ("sent", str(sent)),
            ("accepted (202)", str(len(accepted))),
            ("other statuses", json.dumps(others) if others else "-"),
            ("first failure", next((str(r["body"])[:120] for r in results if r["status"] != 202), "-")),
            ("accepted/s", f"{len(accepted) / span:.1f}"),
            ("latency p50 / p95 / p99 / max ms", f"{pct(0.5)} / {pct(0.95)} / {pct(0.99)} / {round(lat[-1], 2) if lat else 0}"),
            ("runs in db / deliveries", f"{runs_in_db} / {deliveries}"),
            ("duplicate or missing runs", f"{duplicates} / {missing_runs}"),
            ("server CPU ms per delivery", f"{server_cpu * 1000 / max(1, sent):.1f}"),
            ("load client CPU ms per delivery", f"{client_cpu * 1000 / max(1, sent):.1f}"),
            ("target rate met (>= 95%)", "yes" if rate_met else "NO"),
            ("load average 1/5/15 min", " / ".join(f"{x:.1f}" for x in load)),
        ],
        ("metric", "value"),
    )
    print(
        json.dumps(
            {
                "bench": "webhooks",
                "rate": args.rate,
                "server": server_name,
                "client": args.client,
                "fast_path": not args.django_path,
                "web_processes": args.web,
                "seconds": args.seconds,
                "sent": sent,
                "accepted": len(accepted),
                "accepted_per_s": round(len(accepted) / span, 1),
                "p50_ms": pct(0.5),
                "p95_ms": pct(0.95),
                "p99_ms": pct(0.99),
                "max_ms": round(lat[-1], 2) if lat else 0,
                "runs": runs_in_db,
                "deliveries": deliveries,
                "duplicates": duplicates,
                "lost": lost,
                "missing_runs": missing_runs,
                "other_statuses": others,
                "correct": correct,
                "rate_met": rate_met,
                "server_cpu_ms_per_delivery": round(server_cpu * 1000 / max(1, sent), 2),
                "client_cpu_ms_per_delivery": round(client_cpu * 1000 / max(1, sent), 2),
                "loadavg_1m": round(load[0], 2),
                "ok": correct and rate_met,
            }
        )
    )
    if not (correct and rate_met):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
