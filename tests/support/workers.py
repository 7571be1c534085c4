"""Real Celery worker (and beat) processes against the test database and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "artifacts" / "logs"


def worker_env(db_name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "zyra.settings.test"
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db_name}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


def worker_argv(
    name: str, *, queues: str = "io,cpu,sweep", pool: str = "threads", concurrency: int = 8, extra_args: list[str] | None = None
) -> list[str]:
    """The command line of one Celery worker process (tests and benchmarks start them the same way)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "zyra",
        "worker",
        "-Q",
        queues,
        "-P",
        pool,
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "WARNING",
        *(extra_args or []),
    ]


def beat_argv(schedule: Path) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "zyra", "beat", "-l", "WARNING", "-s", str(schedule)]


class ProcessGroup:
    """Start, kill and restart worker processes; logs go to artifacts/logs."""

    def __init__(self, db_name: str, env_extra: dict[str, str] | None = None) -> None:
        self.db_name = db_name
        self.env_extra = dict(env_extra or {})
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        LOG_DIR.mkdir(parents=True, exist_ok=True)

    def start_worker(
        self, name: str, queues: str = "io,cpu,sweep", pool: str = "threads", concurrency: int = 8, extra_args: list[str] | None = None
    ) -> subprocess.Popen[bytes]:
        args = worker_argv(name, queues=queues, pool=pool, concurrency=concurrency, extra_args=extra_args)
        return self._spawn(name, args)

    def start_beat(self, name: str = "beat") -> subprocess.Popen[bytes]:
        return self._spawn(name, beat_argv(LOG_DIR / f"beat-schedule-{os.getpid()}"))

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(LOG_DIR / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=worker_env(self.db_name, self.env_extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.get(name)
        if proc and proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)

    def stop_all(self, sig: int = signal.SIGKILL) -> None:
        for name in list(self.procs):
            self.kill(name, sig)
        self.procs.clear()

    def wait_ready(self, names: list[str], timeout: float = 120.0) -> None:
        """Until each named worker answers a remote-control ping (it consumes its queues from then on).

        A run finishing proves only that some worker is up; on a loaded machine the
        others may still be importing, and a test about spreading work needs them all.
        """
        from zyra.celery import app

        want = set(names)

        def answered() -> bool:
            replies = app.control.ping(timeout=0.5) or []
            return want <= {host.split("@", 1)[0] for reply in replies for host in reply}

        wait_until(answered, timeout, 0.2, f"workers {sorted(want)} to answer a ping")

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]


def wait_until(predicate: Any, timeout: float, interval: float = 0.05, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
