"""WebSocket streams of run events (DESIGN §6).

``ws/runs/<run_id>/?after=<seq>`` replays stored events after ``seq`` and
then streams live ones, with no gap and no duplicate:

1. join the run's group first, so every event committed from now on is
   queued for this consumer while it replays (Channels dispatches one message
   at a time: the queue is the buffer);
2. replay ``RunEvent`` rows with ``seq > after`` page by page until a page
   comes back short — events committed during the replay show up in later
   pages;
3. then the queued live messages are handled: ``seq <= last sent`` is
   dropped, ``seq == last + 1`` is sent, and a jump (a broadcast overtaken by
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

Server → client messages: DESIGN §6 event payloads, plus
``{"type": "replay.done", "last_seq": n}`` once after the replay and
``{"type": "heartbeat", "ts": ..., "last_seq": n}`` every heartbeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from executions import broadcast
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


token_user = database_sync_to_async(_token_user_sync)
run_access = database_sync_to_async(_run_access_sync)
workflow_access = database_sync_to_async(_workflow_access_sync)
run_state = database_sync_to_async(_run_state_sync)
events_page = database_sync_to_async(_events_sync)


# ---------------------------------------------------------------------------
# Consumers
# ---------------------------------------------------------------------------


class _EventStream(AsyncWebsocketConsumer):
    """Shared plumbing: query parsing, authentication, groups, heartbeat."""

    group: str | None = None
    closed: bool = False
    _ticker: asyncio.Task[None] | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") == broadcast.MESSAGE_TYPE:
            # Channels runs close_old_connections() through sync_to_async before
            # every handler: one hop through the single thread-sensitive executor
            # per message per subscriber, which serialised 200 subscribers into
            # seconds of delay. Live batches touch the database only to fill a
            # gap, through database_sync_to_async, which manages connections.
            await self.run_events(message)
            return
        await super().dispatch(message)

    async def run_events(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def query(self) -> dict[str, str]:
        raw = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        return {k: v[-1] for k, v in raw.items()}

    def _token_from_subprotocols(self) -> str | None:
        protocols = list(self.scope.get("subprotocols") or [])
        if len(protocols) >= 2 and protocols[0] == TOKEN_SUBPROTOCOL:
            return protocols[1]
        return None

    async def _open(self) -> Any | None:
        """Accept, then authenticate; returns the user or None after closing with 4401."""
        broadcast.register_server_loop(asyncio.get_running_loop())
        sub_token = self._token_from_subprotocols()
        await self.accept(subprotocol=TOKEN_SUBPROTOCOL if sub_token else None)
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
        await self.close(code=code, reason=reason or None)

    async def join(self, group: str) -> None:
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)

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
        if self._ticker is not None:
            self._ticker.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The stream is server → client only; a client "ping" text is answered to help proxies.
        if text_data == "ping":
            await self.send_control({"type": "pong"})


class RunEventsConsumer(_EventStream):
    """``ws/runs/<run_id>/?after=<seq>[&stay_open=1][&token=<key>]``."""

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
        self.stay_open = query.get("stay_open", "").lower() in {"1", "true", "yes", "on"}
        self.run_id = str(self.scope["url_route"]["kwargs"]["run_id"])
        code, row = await run_access(self.run_id, user.pk, bool(user.is_staff))
        if code or row is None:
            await self.refuse(code, "run not found" if code == CLOSE_NOT_FOUND else "not your run")
            return
        self.workflow_id = str(row["workflow_id"])
        self.last_seq = after
        # Join before reading: whatever commits after the read is queued for us.
        await self.join(broadcast.run_group(self.run_id))
        async with self._lock:
            await self._catch_up()
            await self.send_control({"type": "replay.done", "last_seq": self.last_seq})
            await self._close_if_finished()
        if not self.closed:
            self.start_ticker()

    async def _catch_up(self, upto: int | None = None) -> None:
        """Send stored events after ``last_seq`` (up to ``upto``), page by page. Holds ``_lock``."""
        page = replay_page()
        while not self.closed:
            rows = await events_page(self.run_id, self.workflow_id, self.last_seq, page)
            for wire in rows:
                if upto is not None and wire["seq"] > upto:
                    return
                await self._emit(wire)
            if len(rows) < page:
                return

    async def _emit(self, wire: dict[str, Any]) -> None:
        if wire["seq"] <= self.last_seq or self.closed:
            return
        await self.send_text(wire["text"])
        self.last_seq = wire["seq"]
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

    async def run_events(self, message: dict[str, Any]) -> None:
        """Live batch from the channel layer (``executions.broadcast``)."""
        async with self._lock:
            for wire in sorted(message.get("events", []), key=lambda w: w["seq"]):
                if wire.get("run_id") != self.run_id or wire["seq"] <= self.last_seq:
                    continue
                if wire["seq"] > self.last_seq + 1:
                    # Missing seqs are committed (allocated under the run lock): read them.
                    await self._catch_up(upto=wire["seq"] - 1)
                await self._emit(wire)
            if self.terminal_sent and not self.stay_open:
                # Events of the terminal transaction may follow in the same or a later batch.
                await self._catch_up()
                await self._close_if_finished()

    async def tick(self) -> None:
        async with self._lock:
            await self._catch_up()
            await self.send_control({"type": "heartbeat", "ts": broadcast.format_ts_now(), "last_seq": self.last_seq})
            await self._close_if_finished()


class WorkflowEventsConsumer(_EventStream):
    """``ws/workflows/<workflow_id>/``: live events of every run of the workflow.

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
        self.start_ticker()

    async def run_events(self, message: dict[str, Any]) -> None:
        for wire in message.get("events", []):
            seen = self._seen.setdefault(str(wire.get("run_id")), set())
            seq = int(wire["seq"])
            if seq in seen:
                continue  # a repeated broadcast
            seen.add(seq)
            if len(seen) > self.SEEN_PER_RUN:
                # Keep the newest half: repeats arrive close to the original.
                for old in sorted(seen)[: len(seen) // 2]:
                    seen.discard(old)
            await self.send_text(wire["text"])
