"""WebSocket streams of run events (DESIGN §6).

``ws/runs/<run_id>/?after=<seq>`` replays stored events after ``seq`` and
then streams live ones, with no gap and no duplicate:

1. join the run's group first (through the process's shared subscription,
   ``executions.fanout``), so every event broadcast from now on is buffered
   for this consumer while it replays;
2. replay ``RunEvent`` rows with ``seq > after`` page by page until a page
   comes back short — events committed during the replay show up in later
   pages;
3. then a writer task sends the buffered live events, and later ones as they
   come (everything buffered meanwhile goes out together): ``seq <= last
   sent`` is dropped, ``seq == last + 1`` is sent, and a jump (a broadcast overtaken by
   a later one, or dropped by a full in-memory queue) is filled from the
   database, where every lower seq is already committed because seqs are
   allocated under the run's row lock.

A periodic resync (with the heartbeat) re-reads the database, so even a lost
broadcast — e.g. published while the Redis subscription was being set up —
is delivered within one heartbeat. The run stream closes with 1000 after the
run's terminal event unless ``?stay_open=1``.

``ws/workflows/<workflow_id>/`` streams the live events of all runs of a
workflow (no replay; clients replay a run through its own stream or REST).

Authentication: the session cookie (AuthMiddlewareStack) or a DRF token as
``?token=<key>`` or as the subprotocol pair ``Sec-WebSocket-Protocol: token,
<key>``. Only the owner or staff may subscribe. The connection is accepted
first so that refusals carry a close code a browser can read:
4400 bad request, 4401 unauthenticated, 4403 forbidden, 4404 not found.

Server → client messages: DESIGN §6 event payloads, one per frame, plus
``{"type": "replay.done", "last_seq": n}`` once after the replay and
``{"type": "heartbeat", "ts": ..., "last_seq": n}`` every heartbeat.

With ``?batch=1`` events go out as ``{"type": "batch", "events": [payload,
...]}`` frames instead: the events that are ready to send together (a replay
page, the live events that arrived while the previous frame was written) in
one frame, still every event exactly once and, on the run stream, in seq
order. 200 clients of a run then get one frame each per burst instead of one
per event, which is what keeps a burst's delay low (bench/bench_ws.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from executions import broadcast, fanout
from executions.engine.states import RUN_TERMINAL

log = logging.getLogger("executions.consumers")

CLOSE_NORMAL = 1000
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404

TOKEN_SUBPROTOCOL = "token"  # noqa: S105 - a protocol name, not a secret


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def heartbeat_s() -> float:
    return _setting("ZYRA_WS_HEARTBEAT_S", 20.0)


def replay_page() -> int:
    return max(1, int(_setting("ZYRA_WS_REPLAY_PAGE", 500)))


# Live events buffered for one client that cannot keep up; past this the
# buffer is dropped and the run stream re-reads the database instead.
MAX_BUFFERED = 10_000


# ---------------------------------------------------------------------------
# Database access (sync, run through database_sync_to_async)
# ---------------------------------------------------------------------------


def _token_user_sync(key: str) -> Any | None:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


def _run_access_sync(run_id: str, user_id: int, is_staff: bool) -> tuple[int, dict[str, Any] | None]:
    """(close code or 0, run facts) for a subscription to one run."""
    from executions.models import Run

    row = Run.objects.filter(id=run_id).values("id", "workflow_id", "owner_id", "status", "event_seq").first()
    if row is None:
        return CLOSE_NOT_FOUND, None
    if not is_staff and row["owner_id"] != user_id:
        return CLOSE_FORBIDDEN, None
    return 0, dict(row)


def _workflow_access_sync(workflow_id: str, user_id: int, is_staff: bool) -> int:
    from workflows.models import Workflow

    owner_id = Workflow.objects.filter(id=workflow_id).values_list("owner_id", flat=True).first()
    if owner_id is None:
        return CLOSE_NOT_FOUND
    if not is_staff and owner_id != user_id:
        return CLOSE_FORBIDDEN
    return 0


def _run_state_sync(run_id: str) -> tuple[str, int] | None:
    from executions.models import Run

    row = Run.objects.filter(id=run_id).values_list("status", "event_seq").first()
    return (row[0], row[1]) if row else None


def _events_sync(run_id: str, workflow_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    payloads = broadcast.run_events_after(run_id=run_id, workflow_id=workflow_id, after=after, limit=limit)
    return [broadcast.wire_event(p) for p in payloads]


def _session_user_sync(session_key: str | None) -> Any:
    from importlib import import_module

    from channels.auth import get_user

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return get_user.func({"session": store})  # the sync function under database_sync_to_async


token_user = database_sync_to_async(_token_user_sync)
session_user = database_sync_to_async(_session_user_sync)
run_access = database_sync_to_async(_run_access_sync)
workflow_access = database_sync_to_async(_workflow_access_sync)
run_state = database_sync_to_async(_run_state_sync)
events_page = database_sync_to_async(_events_sync)


class SessionUserMiddleware:
    """``scope["user"]`` from the session cookie, for the event streams.

    Channels' ``AuthMiddlewareStack`` does the same but its session layer also
    wraps ``send`` to save the session on HTTP responses; on a WebSocket that
    wrapper does nothing but costs two lazy-object look-ups per frame, a fifth
    of the server's work per frame when 200 clients watch a run. The streams
    only read the session once, at connect.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        from django.http.cookie import parse_cookie

        cookies: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                cookies = parse_cookie(value.decode("latin1"))
                break
        key = cookies.get(settings.SESSION_COOKIE_NAME)
        user = await session_user(key) if key else AnonymousUser()
        return await self.inner(dict(scope, cookies=cookies, user=user), receive, send)


# ---------------------------------------------------------------------------
# Consumers
# ---------------------------------------------------------------------------


class _EventStream(AsyncWebsocketConsumer):
    """Shared plumbing: query parsing, authentication, groups, live buffer and writer, heartbeat."""

    group: str | None = None
    closed: bool = False
    batch: bool = False
    _ticker: asyncio.Task[None] | None = None
    _writer: asyncio.Task[None] | None = None

    def query(self) -> dict[str, str]:
        raw = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        return {k: v[-1] for k, v in raw.items()}

    @staticmethod
    def flag(value: str | None) -> bool:
        return (value or "").lower() in {"1", "true", "yes", "on"}

    def _token_from_subprotocols(self) -> str | None:
        protocols = list(self.scope.get("subprotocols") or [])
        if len(protocols) >= 2 and protocols[0] == TOKEN_SUBPROTOCOL:
            return protocols[1]
        return None

    async def _open(self) -> Any | None:
        """Accept, then authenticate; returns the user or None after closing with 4401."""
        self._buffer: list[dict[str, Any]] = []
        self._overflow = False
        self._wake = asyncio.Event()
        broadcast.register_server_loop(asyncio.get_running_loop())
        sub_token = self._token_from_subprotocols()
        await self.accept(subprotocol=TOKEN_SUBPROTOCOL if sub_token else None)
        self.batch = self.flag(self.query().get("batch"))
        key = self.query().get("token") or sub_token
        user: Any = None
        if key:
            user = await token_user(key)
        else:
            scoped = self.scope.get("user") or AnonymousUser()
            if getattr(scoped, "is_authenticated", False) and getattr(scoped, "is_active", True):
                user = scoped
        if user is None:
            await self.refuse(CLOSE_UNAUTHENTICATED, "authentication required")
            return None
        return user

    async def refuse(self, code: int, reason: str) -> None:
        log.info("executions.ws_refused path=%s code=%d reason=%s", self.scope.get("path"), code, reason)
        await self.shutdown(code, reason)

    async def shutdown(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self._wake.set()  # lets the writer finish
        await self.close(code=code, reason=reason or None)

    async def join(self, group: str) -> None:
        """Subscribe through the process's shared subscription; live events buffer until ``start_writer``."""
        self.group = group
        await fanout.hub(self.channel_layer).join(group, self)

    def deliver(self, events: list[dict[str, Any]]) -> None:
        """Called by the hub for every broadcast to the group (synchronously, in the event loop)."""
        if self.closed:
            return
        if self._overflow:
            pass
        elif len(self._buffer) + len(events) > MAX_BUFFERED:
            self._buffer = []
            self._overflow = True
            log.warning("executions.ws_buffer_overflow path=%s", self.scope.get("path"))
        else:
            self._buffer.extend(events)
        self._wake.set()

    async def _send_wires(self, wires: list[dict[str, Any]], batch_frame: Callable[[list[dict[str, Any]]], str]) -> None:
        """Send events: one batch frame (``?batch=1``), else one frame per event."""
        if self.batch:
            await self.send_text(batch_frame(wires))
        else:
            for wire in wires:
                await self.send_text(wire["text"])

    def start_writer(self) -> None:
        self._writer = asyncio.ensure_future(self._write_forever())

    async def _write_forever(self) -> None:
        while not self.closed:
            await self._wake.wait()
            self._wake.clear()
            if self.closed:
                return
            wires, self._buffer = self._buffer, []
            overflow, self._overflow = self._overflow, False
            try:
                await self.forward(wires, overflow)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the stream; the next batch or tick resyncs
                log.warning("executions.ws_forward_failed path=%s error=%s", self.scope.get("path"), f"{type(exc).__name__}: {exc}")

    async def forward(self, wires: list[dict[str, Any]], overflow: bool) -> None:
        """Send buffered live events (``overflow``: some were dropped)."""
        raise NotImplementedError

    async def send_text(self, text: str) -> None:
        if not self.closed:
            await self.send(text_data=text)

    async def send_control(self, body: dict[str, Any]) -> None:
        await self.send_text(json.dumps(body, separators=(",", ":")))

    def start_ticker(self) -> None:
        self._ticker = asyncio.ensure_future(self._tick_forever())

    async def _tick_forever(self) -> None:
        interval = heartbeat_s()
        first = min(1.0, interval)
        await asyncio.sleep(first)
        while not self.closed:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed tick must not kill the stream; the next one retries
                log.warning("executions.ws_tick_failed path=%s error=%s", self.scope.get("path"), f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(interval)

    async def tick(self) -> None:
        await self.send_control({"type": "heartbeat", "ts": broadcast.format_ts_now()})

    async def disconnect(self, code: int) -> None:
        self.closed = True
        for task in (self._ticker, self._writer):
            if task is not None:
                task.cancel()
        if self.group is not None:
            await fanout.hub(self.channel_layer).leave(self.group, self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The stream is server → client only; a client "ping" text is answered to help proxies.
        if text_data == "ping":
            await self.send_control({"type": "pong"})


class RunEventsConsumer(_EventStream):
    """``ws/runs/<run_id>/?after=<seq>[&stay_open=1][&batch=1][&token=<key>]``."""

    run_id: str = ""
    workflow_id: str = ""
    last_seq: int = 0
    stay_open: bool = False
    terminal_sent: bool = False

    async def connect(self) -> None:
        self._lock = asyncio.Lock()
        user = await self._open()
        if user is None:
            return
        query = self.query()
        try:
            after = int(query.get("after", "0") or 0)
            if after < 0:
                raise ValueError(after)
        except ValueError:
            await self.refuse(CLOSE_BAD_REQUEST, "after must be a non-negative integer")
            return
        self.stay_open = self.flag(query.get("stay_open"))
        self.run_id = str(self.scope["url_route"]["kwargs"]["run_id"])
        code, row = await run_access(self.run_id, user.pk, bool(user.is_staff))
        if code or row is None:
            await self.refuse(code, "run not found" if code == CLOSE_NOT_FOUND else "not your run")
            return
        self.workflow_id = str(row["workflow_id"])
        self.last_seq = after
        # Join before reading: whatever commits after the read is buffered for us.
        await self.join(broadcast.run_group(self.run_id))
        async with self._lock:
            await self._catch_up()
            await self.send_control({"type": "replay.done", "last_seq": self.last_seq})
            await self._close_if_finished()
        if not self.closed:
            self.start_writer()
            self.start_ticker()

    async def _catch_up(self, upto: int | None = None) -> None:
        """Send stored events after ``last_seq`` (up to ``upto``), page by page. Holds ``_lock``."""
        page = replay_page()
        while not self.closed:
            rows = await events_page(self.run_id, self.workflow_id, self.last_seq, page)
            if upto is not None:
                rows = [w for w in rows if w["seq"] <= upto]
            await self._emit(rows)
            if len(rows) < page:
                return

    async def _stored(self, after: int, upto: int) -> list[dict[str, Any]]:
        """Stored events ``after < seq <= upto`` (all committed: seqs are allocated under the run's lock)."""
        out: list[dict[str, Any]] = []
        page = replay_page()
        while after < upto:
            rows = [w for w in await events_page(self.run_id, self.workflow_id, after, page) if w["seq"] <= upto]
            out += rows
            if len(rows) < page:
                break
            after = rows[-1]["seq"]
        return out

    async def _emit(self, wires: list[dict[str, Any]]) -> None:
        """Send the events after ``last_seq`` of ``wires`` (in seq order); one frame in batch mode."""
        ready: list[dict[str, Any]] = []
        last = self.last_seq
        for wire in wires:
            if wire["seq"] > last:
                ready.append(wire)
                last = wire["seq"]
        if not ready or self.closed:
            return
        await self._send_wires(ready, fanout.frame_text)
        self.last_seq = last
        for wire in ready:
            if wire["type"] in broadcast.RUN_TERMINAL_EVENTS:
                self.terminal_sent = True
            elif wire["type"] == "run.resumed":
                self.terminal_sent = False

    async def _close_if_finished(self) -> None:
        if self.stay_open or self.closed:
            return
        state = await run_state(self.run_id)
        if state is None:
            await self.shutdown(CLOSE_NORMAL, "run deleted")
            return
        status, event_seq = state
        if status in RUN_TERMINAL and self.last_seq >= event_seq:
            await self.shutdown(CLOSE_NORMAL, f"run {status}")

    async def forward(self, wires: list[dict[str, Any]], overflow: bool) -> None:
        async with self._lock:
            if overflow:
                await self._catch_up()
            ordered = [w for w in wires if w.get("run_id") == self.run_id]
            ordered.sort(key=lambda w: w["seq"])  # linear when already in order, the usual case
            out: list[dict[str, Any]] = []
            last = self.last_seq
            for wire in ordered:
                seq = wire["seq"]
                if seq <= last:
                    continue
                if seq > last + 1:
                    # A broadcast overtaken by a later one, or lost: the missing seqs are committed.
                    out += await self._stored(last, seq - 1)
                out.append(wire)
                last = seq
            await self._emit(out)
            if self.terminal_sent and not self.stay_open:
                # Events of the terminal transaction may follow in the same or a later broadcast.
                await self._catch_up()
                await self._close_if_finished()

    async def tick(self) -> None:
        async with self._lock:
            await self._catch_up()
            await self.send_control({"type": "heartbeat", "ts": broadcast.format_ts_now(), "last_seq": self.last_seq})
            await self._close_if_finished()


class WorkflowEventsConsumer(_EventStream):
    """``ws/workflows/<workflow_id>/[?batch=1]``: live events of every run of the workflow.

    Live only, in arrival order: broadcasts from different workers may arrive
    out of seq order, so repeats are recognised by the seqs seen per run, not
    by a high-water mark (which would drop an overtaken event).
    """

    SEEN_PER_RUN = 4096

    async def connect(self) -> None:
        self._seen: dict[str, set[int]] = {}
        user = await self._open()
        if user is None:
            return
        workflow_id = str(self.scope["url_route"]["kwargs"]["workflow_id"])
        code = await workflow_access(workflow_id, user.pk, bool(user.is_staff))
        if code:
            await self.refuse(code, "workflow not found" if code == CLOSE_NOT_FOUND else "not your workflow")
            return
        await self.join(broadcast.workflow_group(workflow_id))
        await self.send_control({"type": "replay.done", "last_seq": None})
        self.start_writer()
        self.start_ticker()

    async def forward(self, wires: list[dict[str, Any]], overflow: bool) -> None:
        if overflow:
            log.warning("executions.ws_workflow_events_dropped path=%s", self.scope.get("path"))
        fresh: list[dict[str, Any]] = []
        for wire in wires:
            seen = self._seen.setdefault(str(wire.get("run_id")), set())
            seq = int(wire["seq"])
            if seq in seen:
                continue  # a repeated broadcast
            seen.add(seq)
            if len(seen) > self.SEEN_PER_RUN:
                # Keep the newest half: repeats arrive close to the original.
                for old in sorted(seen)[: len(seen) // 2]:
                    seen.discard(old)
            fresh.append(wire)
        if not fresh:
            return
        await self._send_wires(fresh, fanout.batch_text)
