"""Overhead of the resilience layer on one HTTP node's call (not a test: prints numbers).

Same process, same server, interleaved iterations of:

  plain    safe_http.fetch (SSRF guard, pooled connection) - no limiter, no breaker
  node     the HTTP_REQUEST handler -> outbound.request with the rate limiter
           (GCRA Lua script in Redis) and the circuit breaker (PostgreSQL: one
           state read on the call's path; the outcome written by the per-process
           write-behind thread, ZYRA_BREAKER_WRITE_BEHIND) both on

The added cost per call is median(node) - median(plain); the target is <= 2 ms.

Usage (a scratch database; the bench migrates it and writes a ServicePolicy row):

  DATABASE_URL=postgres://postgres@127.0.0.1:5432/zyra_bench REDIS_URL=redis://127.0.0.1:6379/3 \\
      .venv/bin/python bench/bench_outbound.py [--iterations 1000]

Without DATABASE_URL it runs embedded (SQLite in a temporary directory, the
in-process limiter). The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class FastServer:
    """Keep-alive HTTP/1.1 on loopback answering a small JSON body in ONE write (no Nagle stalls).

    It runs in its own process so it never competes with the measured client for the GIL.
    """

    BODY = b'{"ok":true,"items":[1,2,3]}'

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        ctx = multiprocessing.get_context("fork")  # before Django opens any connection
        self._count = ctx.Value("q", 0)
        self._proc = ctx.Process(target=self._run, daemon=True)
        self._proc.start()
        self.sock.close()

    @property
    def requests(self) -> int:
        return int(self._count.value)

    def close(self) -> None:
        self._proc.terminate()
        self._proc.join(timeout=5)

    def _run(self) -> None:
        self._accept()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        response = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(self.BODY)).encode()
            + b"\r\n\r\n"
            + self.BODY
        )
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                with self._count.get_lock():
                    self._count.value += 1
                conn.sendall(response)


def setup_django() -> str:
    if not os.environ.get("DATABASE_URL"):
        os.environ.setdefault("ZYRA_VAR_DIR", tempfile.mkdtemp(prefix="zyra-bench-"))
    elif os.environ["DATABASE_URL"].startswith("postgres"):
        _create_database(os.environ["DATABASE_URL"])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zyra.settings")
    os.environ.setdefault("ZYRA_HTTP_ALLOWLIST", "127.0.0.1")
    os.environ.setdefault("ZYRA_LOG_LEVEL", "WARNING")
    # A scratch key ring: the bench stores no secrets, but the app refuses to start on a
    # real database without one.
    os.environ.setdefault("ZYRA_MASTER_KEYS", "bench:" + base64.b64encode(os.urandom(32)).decode())
    os.environ.setdefault("SECRET_KEY", base64.b64encode(os.urandom(48)).decode())
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    db = str(settings.DATABASES["default"]["ENGINE"]).rsplit(".", 1)[-1]
    return f"{db} + {'redis' if settings.REDIS_URL else 'in-process limiter'}"


def _create_database(url: str) -> None:
    """The scratch database named in DATABASE_URL, created when missing."""
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = f"host={parsed.hostname or '127.0.0.1'} port={parsed.port or 5432} user={parsed.username or 'postgres'} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    server = FastServer()  # forked before Django exists in this process
    mode = setup_django()
    import executions.nodes  # noqa: F401 - registers the handlers
    from executions.models import CircuitBreaker, ServicePolicy
    from executions.nodes.base import NodeContext, handlers
    from executions.resilience import outbound, safe_http
    from zyra.redaction import Redactor

    url = f"http://127.0.0.1:{server.port}/bench"
    key = outbound.service_key(url)
    # A limit the bench never reaches, so every call runs the full GCRA script without being deferred.
    ServicePolicy.objects.update_or_create(key=key, defaults={"rate_per_s": 1_000_000, "burst": 100_000})
    CircuitBreaker.objects.filter(key=key).delete()
    handler = handlers.get("HTTP_REQUEST")

    def ctx() -> NodeContext:
        config = {"url": url, "method": "GET"}
        return NodeContext(
            run_id="bench",
            workflow_id="bench",
            owner_id=0,
            node_id="call",
            node_type="HTTP_REQUEST",
            attempt=1,
            config=config,
            raw_config=config,
            data={"config": config},
            input=None,
            inputs_by_node={},
            run_input={},
            deadline=time.monotonic() + 30,
            timeout_s=30,
            idempotency_key="bench:call:1",
            redactor=Redactor(),
        )

    def plain() -> None:
        assert safe_http.fetch("GET", url, timeout_s=30).status == 200

    def node() -> None:
        assert handler.run(ctx())["status"] == 200

    for _ in range(args.warmup):
        plain()
        node()
    timings: dict[str, list[float]] = {"plain": [], "node": []}
    for i in range(args.iterations):
        order = (("plain", plain), ("node", node)) if i % 2 == 0 else (("node", node), ("plain", plain))
        for name, fn in order:
            start = time.perf_counter()
            fn()
            timings[name].append((time.perf_counter() - start) * 1000.0)

    # Where the added time goes: each guard step on its own, same service key.
    from executions.resilience.breaker import Breaker, BreakerConfig, Permit, service_state_load
    from executions.resilience.ratelimit import RateLimit, RateLimiter

    breaker = Breaker(BreakerConfig.from_settings())
    limiter = RateLimiter(RateLimit(1_000_000, 100_000))
    steps: dict[str, Any] = {
        "state read (PG)": lambda: service_state_load(key=key),
        "limiter (Redis)": lambda: limiter.acquire(key),
        "outcome write (PG, write-behind: off the call path)": lambda: breaker.record(Permit(key, None), "success"),
    }
    step_ms: dict[str, float] = {}
    for label, fn in steps.items():
        samples = []
        for _ in range(max(100, args.iterations // 5)):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1000.0)
        step_ms[label] = statistics.median(samples)

    rows = []
    for name in ("plain", "node"):
        t = timings[name]
        rows.append((name, statistics.median(t), statistics.mean(t), pct(t, 0.95), pct(t, 0.99)))
    added_median = rows[1][1] - rows[0][1]
    added_mean = rows[1][2] - rows[0][2]
    from executions.resilience.breaker import breaker_flush

    breaker_flush(10)
    total_calls = CircuitBreaker.objects.get(key=key).total_calls

    print(f"outbound overhead bench: {args.iterations} interleaved iterations, {mode}, server on loopback")
    print(f"{'path':<8} {'median ms':>10} {'mean ms':>10} {'p95 ms':>10} {'p99 ms':>10}")
    for name, med, mean, p95, p99 in rows:
        print(f"{name:<8} {med:>10.3f} {mean:>10.3f} {p95:>10.3f} {p99:>10.3f}")
    print(
        f"added by limiter + breaker: median {added_median:.3f} ms, mean {added_mean:.3f} ms per call "
        f"(target <= 2 ms: {'met' if added_median <= 2.0 else 'NOT met'})"
    )
    print("median per guard step: " + ", ".join(f"{k} {v:.3f} ms" for k, v in step_ms.items()))
    load = os.getloadavg()
    print(
        f"breaker rows saw {total_calls} calls; server answered {server.requests} requests; "
        f"load average {load[0]:.1f} on {os.cpu_count()} CPUs (a busy box inflates every round trip)"
    )
    result: dict[str, Any] = {
        "bench": "outbound",
        "iterations": args.iterations,
        "mode": mode,
        "plain_median_ms": round(rows[0][1], 3),
        "node_median_ms": round(rows[1][1], 3),
        "plain_p95_ms": round(rows[0][3], 3),
        "node_p95_ms": round(rows[1][3], 3),
        "added_median_ms": round(added_median, 3),
        "added_mean_ms": round(added_mean, 3),
        "target_ms": 2.0,
        "target_met": added_median <= 2.0,
        "steps_median_ms": {k: round(v, 3) for k, v in step_ms.items()},
        "loadavg_1m": round(load[0], 2),
    }
    server.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
