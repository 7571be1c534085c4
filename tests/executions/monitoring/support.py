"""Helpers for the live-monitoring tests: a real ASGI server and a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.workers import LOG_DIR, ROOT, worker_env

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AsgiServer:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def start_server(db_name: str, name: str, env_extra: dict[str, str] | None = None, server: str = "daphne") -> AsgiServer:
    """Start daphne or uvicorn on a free loopback port and wait until /healthz answers."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = worker_env(db_name, env_extra)
    log_path = LOG_DIR / f"{name}.log"
    if server == "uvicorn":
        cmd = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "zyra.asgi:application"]
    else:
        cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "zyra.asgi:application"]
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    asgi = AsgiServer(proc, port, log_path)
    deadline = time.monotonic() + 120  # Django starts slowly on a loaded machine
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"ASGI server exited: {asgi.log_tail()}")
        try:
            with urllib.request.urlopen(asgi.http + "/healthz", timeout=2) as resp:  # noqa: S310 - loopback http
                if resp.status == 200:
                    return asgi
        except OSError:
            pass
        if time.monotonic() > deadline:
            asgi.stop()
            raise AssertionError(f"ASGI server did not start: {asgi.log_tail()}")
        time.sleep(0.1)


@dataclass
class Stream:
    """What a client saw: event payloads, control messages, how it ended."""

    events: list[dict[str, Any]] = field(default_factory=list)
    controls: list[dict[str, Any]] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # wall clock of each event's receipt
    frames: list[int] = field(default_factory=list)  # events per frame that carried events
    close_code: int | None = None
    close_reason: str = ""
    subprotocol: str | None = None
    opened_at: float = 0.0
    replay_done_at: float | None = None
    timed_out: bool = False

    @property
    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events]


async def read_stream(
    url: str,
    *,
    origin: str,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
    stop_after_seq: int | None = None,
    stop: Any = None,
    timeout: float = 30.0,
) -> Stream:
    """Connect and read until the server closes, ``stop_after_seq`` is reached, ``stop(stream)`` is true or ``timeout``."""
    out = Stream()
    kwargs: dict[str, Any] = {"origin": origin, "open_timeout": 10, "max_size": 2**24}
    if headers:
        kwargs["additional_headers"] = headers
    if subprotocols:
        kwargs["subprotocols"] = subprotocols
    deadline = time.monotonic() + timeout
    async with connect(url, **kwargs) as ws:
        out.opened_at = time.time()
        out.subprotocol = ws.subprotocol
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    out.timed_out = True
                    break
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=remaining)
                except TimeoutError:
                    out.timed_out = True
                    break
                msg = json.loads(raw)
                if msg.get("type") == "batch":
                    assert msg["events"], "an empty batch frame"
                    out.events += msg["events"]
                    out.received_at += [time.time()] * len(msg["events"])
                    out.frames.append(len(msg["events"]))
                elif "seq" in msg and isinstance(msg.get("seq"), int) and "run_id" in msg:
                    out.events.append(msg)
                    out.received_at.append(time.time())
                    out.frames.append(1)
                else:
                    out.controls.append(msg)
                    if msg.get("type") == "replay.done" and out.replay_done_at is None:
                        out.replay_done_at = time.time()
                if stop_after_seq is not None and out.events and out.events[-1]["seq"] >= stop_after_seq:
                    break
                if stop is not None and stop(out):
                    break
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                out.close_code = exc.rcvd.code
                out.close_reason = exc.rcvd.reason
    return out


def read(url: str, **kwargs: Any) -> Stream:
    return asyncio.run(read_stream(url, **kwargs))


def refused_code(url: str, *, origin: str, **kwargs: Any) -> int | None:
    """The close code of a subscription the server refuses (after accepting the handshake)."""
    try:
        stream = read(url, origin=origin, timeout=10, **kwargs)
    except InvalidStatus as exc:  # handshake rejected outright
        return -exc.response.status_code
    assert not stream.events, f"a refused client received events: {stream.events[:3]}"
    return stream.close_code


def api_events(client: Any, run_id: Any) -> list[dict[str, Any]]:
    """Every stored event of a run through GET /api/runs/{id}/events/ (following ``next``)."""
    out: list[dict[str, Any]] = []
    url = f"/api/runs/{run_id}/events/?limit=7"
    while url:
        resp = client.get(url)
        assert resp.status_code == 200, resp.content
        body = resp.json()
        out.extend(body["results"])
        url = body["next"]
        if url:
            url = url.split("testserver", 1)[-1]
    return out
