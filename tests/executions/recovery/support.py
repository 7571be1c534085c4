"""Fault injection for the recovery tests: private Redis and PostgreSQL servers, worker kills, audits.

Everything runs on loopback. Servers we restart are our own instances on
their own ports (Redis 6390-6399, PostgreSQL 5440-5449), so the rest of the
suite is never disturbed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import LocalServer, Request
from tests.support.workers import LOG_DIR, ProcessGroup, wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")

# Short leases so that a lost worker is noticed in seconds (the production defaults are 30 s).
FAST_RECOVERY_ENV = {"ZYRA_LEASE_S": "3", "ZYRA_REQUEUE_AFTER_S": "3", "ZYRA_SWEEP_INTERVAL_S": "1", "ZYRA_WAKE_GRACE_S": "1"}


# --------------------------------------------------------------------------- Redis


def free_port(candidates: range) -> int:
    """The first of ``candidates`` nobody listens on (another session of ours may hold one)."""
    import socket

    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {candidates}")


class RedisServer:
    """A ``redis-server`` without persistence: a restart loses every queued message."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = tempfile.mkdtemp(prefix=f"zyra-redis-{port}-")

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=2)

    def ping(self) -> bool:
        try:
            return bool(self._client().ping())
        except Exception:  # noqa: BLE001 - not up (yet)
            return False

    def start(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)  # a fresh clone has no artifacts/ yet
        log = open(LOG_DIR / f"rec-redis-{self.port}.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self.ping, 10, message=f"redis on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def queued_messages(self, prefix: str = "io") -> list[dict[str, Any]]:
        """Decoded ``execute_node`` messages waiting in the queue (every priority list of it)."""
        import base64

        r = self._client()
        out = []
        for key in r.keys(f"{prefix}*"):
            if r.type(key) != b"list":
                continue
            for raw in r.lrange(key, 0, -1):
                msg = json.loads(raw)
                body = json.loads(base64.b64decode(msg["body"]))
                headers = msg["headers"]
                out.append({"queue": key.decode(), "task": headers["task"], "args": body[0], "eta": headers.get("eta")})
        return out


@contextlib.contextmanager
def broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (which sends the first messages of a run) at ``url``."""
    from zyra.celery import app

    def reset() -> None:
        # Forget the cached pools (kombu keeps one per broker URL and hands it out again: never close it).
        app._pool = None
        app.amqp._producer_pool = None

    keys = ("broker_url", "broker_write_url", "broker_read_url")  # Celery resolves the read/write URLs at start
    old = {k: app.conf[k] for k in keys}
    reset()
    for k in keys:
        app.conf[k] = url
    try:
        yield
    finally:
        reset()
        for k in keys:
            app.conf[k] = old[k]


# --------------------------------------------------------------------------- PostgreSQL


class PgCluster:
    """A throw-away PostgreSQL cluster (initdb in a temporary folder) on its own port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix=f"zyra-pg-{port}-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "server.log"
        self.as_postgres = os.geteuid() == 0  # initdb refuses root

    def _run(self, args: list[str], timeout: float = 120) -> None:
        cmd = (["runuser", "-u", "postgres", "--"] if self.as_postgres else []) + args
        subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def url(self, db: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def init(self) -> None:
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
        self.start()

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-o", opts, "-w", "-t", "60", "start"])

    def stop(self, mode: str = "immediate") -> None:
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def restart(self, down_s: float = 1.0) -> None:
        self.stop("immediate")  # like a crash: every connection is cut
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- workers


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (prefork pool processes of a worker)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command may contain spaces and parentheses: the ppid follows the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def wait_pool_ready(group: ProcessGroup, name: str, concurrency: int, timeout: float = 60) -> None:
    """A prefork worker is ready once its pool processes exist (they fork after start-up)."""
    proc = group.procs[name]
    wait_until(lambda: len(children(proc.pid)) >= concurrency, timeout, 0.1, f"{name} pool processes")


@dataclass
class Kill:
    at: float  # time.time()
    worker: str
    pids: list[int]
    mode: str  # "worker" (the whole process group) | "child" (one pool process)


@dataclass
class Chaos:
    """Kill one worker every ``every_s`` seconds with SIGKILL, round robin, and restart it.

    Modes alternate: the whole worker (main process and pool: its reserved
    messages stay unacknowledged in Redis), or one pool process of a prefork
    worker (Celery requeues its message at once: ``reject_on_worker_lost``).
    """

    group: ProcessGroup
    names: list[str]
    start_worker: Any  # callable(name) -> None
    every_s: float = 2.0
    child_kills: bool = True
    kills: list[Kill] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    errors: list[str] = field(default_factory=list)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="chaos", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        i = 0
        rnd = random.Random(6)
        while not self._stop.wait(self.every_s):
            name = self.names[i % len(self.names)]
            mode = "child" if self.child_kills and i % 2 == 1 else "worker"
            i += 1
            try:
                proc = self.group.procs[name]
                if proc.poll() is not None:
                    self.start_worker(name)
                    continue
                kids = children(proc.pid)
                if mode == "child" and kids:
                    victim = rnd.choice(kids)
                    self.kills.append(Kill(time.time(), name, [victim], "child"))
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
                else:
                    self.kills.append(Kill(time.time(), name, [proc.pid, *kids], "worker"))
                    self.group.kill(name)
                    self.start_worker(name)
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def killed_pids(self) -> set[int]:
        return {pid for k in self.kills for pid in k.pids}


# --------------------------------------------------------------------------- workload


def ten_node_workflow(server: LocalServer) -> dict[str, Any]:
    """Fan-out of four HTTP calls, fan-in (MERGE), a call, fan-out of two, fan-in into a last call.

    Every call is a POST to the counting server, so it carries the node's
    ``Idempotency-Key: <run>:<node>:<attempt>``: the server knows exactly
    which attempt of which node of which run called it.
    """
    from tests.support.factories import edge, node

    def call(node_id: str) -> dict[str, Any]:
        return node(
            node_id,
            "HTTP_REQUEST",
            {"url": server.url(f"/c/{node_id}"), "method": "POST", "json": {"n": node_id}},
            timeout_s=20,
            retry={"max_attempts": 3, "backoff_s": 0.2, "jitter": 0},
        )

    nodes = [
        node("start", "MANUAL"),
        *[call(f"a{i}") for i in range(4)],
        node("join", "MERGE", {"mode": "list"}),
        call("b"),
        call("c0"),
        call("c1"),
        call("end"),
    ]
    edges = [
        *[edge("start", f"a{i}") for i in range(4)],
        *[edge(f"a{i}", "join") for i in range(4)],
        edge("join", "b"),
        edge("b", "c0"),
        edge("b", "c1"),
        edge("c0", "end"),
        edge("c1", "end"),
    ]
    return {"nodes": nodes, "edges": edges, "settings": {"max_parallel_nodes": 8}}


TEN_NODE_CALLS = ["a0", "a1", "a2", "a3", "b", "c0", "c1", "end"]


def jittered(server: LocalServer, prefix: str = "/c/", low: float = 0.05, high: float = 0.25) -> None:
    """Answer every call under ``prefix`` after a random pause (so that kills land on running nodes)."""
    rnd = random.Random(7)

    def responder(req: Request) -> tuple[int, dict[str, str], bytes]:
        time.sleep(rnd.uniform(low, high))
        return 200, {"Content-Type": "application/json"}, json.dumps({"ok": True, "key": req.headers.get("idempotency-key")}).encode()

    # LocalServer routes by exact path: register every node's path.
    for nid in TEN_NODE_CALLS:
        server.route(f"{prefix}{nid}", responder)


def calls_by_key(server: LocalServer) -> dict[tuple[str, str], list[int]]:
    """(run_id, node_id) -> attempt numbers the server saw, from the Idempotency-Key headers."""
    out: dict[tuple[str, str], list[int]] = defaultdict(list)
    for req in list(server.requests):
        key = req.headers.get("idempotency-key")
        if not key:
            continue
        run_id, node_id, attempt = key.rsplit(":", 2)
        out[(run_id, node_id)].append(int(attempt))
    return out


@dataclass
class Audit:
    runs: int = 0
    node_runs: int = 0
    calls: int = 0
    repeats: int = 0  # calls beyond one per (run, node)
    lost_attempts: int = 0  # attempts closed by the sweeper with worker_lost
    lost_workers: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def audit(run_ids: list[Any], server: LocalServer, call_nodes: list[str]) -> Audit:
    """The chaos invariants over the test database (see ``audit_rows``)."""
    from executions.models import NodeRun, Run, RunEvent

    ids = [str(r) for r in run_ids]
    runs = {str(rid): status for rid, status in Run.objects.filter(id__in=ids).values_list("id", "status")}
    succeeded_events: dict[tuple[str, str], int] = defaultdict(int)
    for run_id, node_id in RunEvent.objects.filter(run_id__in=ids, type="node.succeeded").values_list("run_id", "node_id"):
        succeeded_events[(str(run_id), node_id)] += 1
    nodes = [
        {"run_id": str(r), "node_id": n, "status": st, "attempt": a, "attempts": h}
        for r, n, st, a, h in NodeRun.objects.filter(run_id__in=ids).values_list("run_id", "node_id", "status", "attempt", "attempts")
    ]
    return audit_rows(ids, runs, nodes, succeeded_events, calls_by_key(server), call_nodes)


def audit_rows(
    run_ids: list[str],
    runs: dict[str, str],
    nodes: list[dict[str, Any]],
    succeeded_events: dict[tuple[str, str], int],
    seen: dict[tuple[str, str], list[int]],
    call_nodes: list[str],
) -> Audit:
    """Every run succeeded; every node succeeded once (one ``node.succeeded`` event); the server saw every
    calling node at least once, each attempt at most once, the succeeded attempt, and other attempts
    only if they were lost with their worker. Every violation is collected."""
    result = Audit(runs=len(runs))
    for run_id in run_ids:
        if runs.get(run_id) != "succeeded":
            result.problems.append(f"run {run_id} is {runs.get(run_id, 'missing')}")
    for nr in nodes:
        result.node_runs += 1
        key = (nr["run_id"], nr["node_id"])
        history = nr["attempts"] or []
        if nr["status"] != "succeeded":
            result.problems.append(f"{key} is {nr['status']}")
        if succeeded_events.get(key, 0) != 1:
            result.problems.append(f"{key} has {succeeded_events.get(key, 0)} node.succeeded events")
        lost = [a for a in history if (a.get("error") or {}).get("code") == "worker_lost"]
        result.lost_attempts += len(lost)
        result.lost_workers.update(str(a.get("worker", "")) for a in lost)
        other_failures = [a for a in history if a.get("status") == "failed" and a not in lost]
        if other_failures:
            result.problems.append(f"{key} failed attempts other than worker_lost: {other_failures}")
        if nr["node_id"] not in call_nodes:
            continue
        attempts = seen.get(key, [])
        result.calls += len(attempts)
        result.repeats += max(0, len(attempts) - 1)
        if not attempts:
            result.problems.append(f"{key} never reached the server")
            continue
        if len(attempts) != len(set(attempts)):
            result.problems.append(f"{key}: one attempt called the server twice: {sorted(attempts)}")
        if nr["attempt"] not in attempts:
            result.problems.append(f"{key}: the succeeded attempt {nr['attempt']} never called the server ({attempts})")
        lost_numbers = {a["attempt"] for a in lost}
        for number in set(attempts) - {nr["attempt"]}:
            if number not in lost_numbers:
                result.problems.append(f"{key}: attempt {number} called the server but was not lost with its worker (attempts {history})")
    return result
