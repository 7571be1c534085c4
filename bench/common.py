"""Shared set-up for benchmarks: a dedicated PostgreSQL database and Redis db, real worker processes.

Benchmarks are not tests: they print figures (a table, then one JSON line).
Run one with ``.venv/bin/python bench/<name>.py``; ``bash bench/run.sh`` runs all.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.workers import worker_argv  # noqa: E402 - after the path is set

# Random per benchmark process, passed to every server and worker it starts.
_BENCH_MASTER_KEYS = "bench1:" + base64.b64encode(os.urandom(32)).decode()
_BENCH_SECRET_KEY = secrets.token_urlsafe(50)

BENCH_DB = os.environ.get("ZYRA_BENCH_DB", "zyra_bench")
BENCH_REDIS_DB = os.environ.get("ZYRA_BENCH_REDIS_DB", "10")


def bench_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "zyra.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{BENCH_REDIS_DB}",
            "REDIS_URL": f"redis://127.0.0.1:6379/{BENCH_REDIS_DB}",
            "ZYRA_HTTP_ALLOWLIST": "127.0.0.1,::1,localhost",
            "ZYRA_MASTER_KEYS": env.get("ZYRA_MASTER_KEYS", _BENCH_MASTER_KEYS),
            "SECRET_KEY": env.get("SECRET_KEY", _BENCH_SECRET_KEY),
            "ZYRA_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if extra:
        env.update(extra)
    return env


def setup_django(extra: dict[str, str] | None = None) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "services.sh")], check=True, stdout=subprocess.DEVNULL)
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    os.environ.update(bench_env(extra))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    # The bench database keeps what earlier runs left. Where autovacuum is off (this box's PostgreSQL
    # has it off), their dead row versions stay in the tables and in the partial indexes the sweeper
    # and the engine scan (264,000 of them after 19 bench_load runs: the sweeper's query then took
    # 130-320 ms a sweep). Vacuum first, as autovacuum would have between two runs.
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={BENCH_DB}", autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    import redis

    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()


class Workers:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        n: int = 1,
        pool: str = "threads",
        concurrency: int = 8,
        queues: str = "io,cpu,sweep",
        include: str | None = None,
        extra_env: dict[str, str] | None = None,
        beat: bool = False,
    ) -> None:
        logdir = ROOT / "artifacts" / "bench"
        logdir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            extra = ["-I", include] if include else []
            if beat and i == 0:
                extra += ["-B", "-s", str(logdir / "beat-schedule")]
            args = worker_argv(f"bench{i}-{len(self.procs)}", queues=queues, pool=pool, concurrency=concurrency, extra_args=extra)
            log = open(logdir / f"worker-{len(self.procs)}.log", "ab")  # noqa: SIM115
            self.procs.append(
                subprocess.Popen(args, cwd=ROOT, env=bench_env(extra_env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
        time.sleep(2.5)

    def stop(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.procs = []


def wait_run(run_id: Any, timeout: float = 300.0, poll: float = 0.002) -> Any:
    from executions.models import Run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Run.objects.filter(id=run_id).values_list("status", flat=True).first()
        if status in {"succeeded", "partially_succeeded", "failed", "cancelled", "timed_out"}:
            return Run.objects.get(id=run_id)
        time.sleep(poll)
    raise TimeoutError(f"run {run_id} did not finish in {timeout}s")


def bench_user() -> Any:
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench")
    return user


def table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def emit(figures: dict[str, Any]) -> None:
    print(json.dumps(figures, sort_keys=True))
