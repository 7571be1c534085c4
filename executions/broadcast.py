"""Broadcast of committed events to Channels groups (run and workflow).

Called by ``executions.events`` after the transaction that wrote the events
commits (``transaction.on_commit``), from Celery worker threads, Django views
and management commands. ``publish`` therefore never blocks on the channel
layer and never raises into its caller: delivery is handed to an event loop
and failures are logged. The database stays the truth; a consumer that misses
a broadcast catches up from ``RunEvent`` rows (see ``executions.consumers``).

Wire format: one channel-layer message per group and ``publish`` call,
``{"type": "run.events", "events": [{"seq", "run_id", "type", "text"}]}``,
where ``text`` is the DESIGN §6 payload already serialised to JSON, so that
200 subscribers of one run forward the same string instead of re-encoding it.

Where delivery happens:

- The Redis pub/sub layer (distributed): a daemon thread with plain Redis
  clients takes what was published, merges it per group and PUBLISHes it in
  one pipeline (``_RedisPublisher``). Other Redis layers: a daemon thread in
  this process owns one event loop, hence one connection reused by every
  publish.
- The in-memory layer (embedded) is neither thread-safe nor shared between
  processes: its groups live in the ASGI server's event loop, which consumers
  register on connect (``register_server_loop``). Without a registered loop
  nobody in this process can be listening, so publishing is a no-op.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Coroutine, Iterable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

log = logging.getLogger("executions.broadcast")

MESSAGE_TYPE = "run.events"
RUN_TERMINAL_EVENTS = frozenset({"run.succeeded", "run.partially_succeeded", "run.failed", "run.cancelled", "run.timed_out"})


def run_group(run_id: object) -> str:
    return f"run.{run_id}"


def workflow_group(workflow_id: object) -> str:
    return f"workflow.{workflow_id}"


def format_ts(ts: datetime | str) -> str:
    """DESIGN §6 timestamp: UTC, milliseconds, ``Z`` suffix."""
    if isinstance(ts, str):
        return ts
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), default=str)


def wire_event(payload: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    """The compact form consumers receive: routing fields plus the JSON text."""
    return {
        "seq": int(payload["seq"]),
        "run_id": str(payload["run_id"]),
        "type": str(payload["type"]),
        "text": text if text is not None else encode(payload),
    }


def row_payload(*, seq: int, type: str, run_id: object, workflow_id: object, node_id: str, ts: datetime | str, data: Any) -> dict[str, Any]:
    """Build the DESIGN §6 payload from a stored ``RunEvent`` row's fields."""
    return {
        "seq": seq,
        "type": type,
        "run_id": str(run_id),
        "workflow_id": str(workflow_id),
        "node_id": node_id or None,
        "ts": format_ts(ts),
        "data": data if data is not None else {},
    }


# ---------------------------------------------------------------------------
# Delivery loops
# ---------------------------------------------------------------------------

_server_loop: asyncio.AbstractEventLoop | None = None
_pump_lock = threading.Lock()
_pump: _Pump | None = None
_pending: set[Future[Any]] = set()
_pending_lock = threading.Lock()
# With the layer unreachable, sends pile up in the pump; past this many the
# newest are dropped (logged): subscribers re-read them from the database.
MAX_PENDING = 10_000
SEND_TIMEOUT_S = 5.0


def register_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Remember the ASGI server's loop (the in-memory layer's groups live there)."""
    global _server_loop
    _server_loop = loop


class _Pump:
    """A daemon thread running one event loop for Redis channel-layer sends."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="zyra-broadcast", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()


def _pump_loop() -> asyncio.AbstractEventLoop:
    global _pump
    with _pump_lock:
        # A forked child (Celery prefork) inherits the object but not the thread.
        if _pump is None or _pump.pid != os.getpid() or not _pump.thread.is_alive():
            _pump = _Pump()
        return _pump.loop


def _submit(coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> None:
    with _pending_lock:
        backlog = len(_pending)
    if backlog >= MAX_PENDING:
        coro.close()
        log.error("executions.broadcast_dropped backlog=%d", backlog)
        return
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    with _pending_lock:
        _pending.add(future)
    future.add_done_callback(_done)


def _done(future: Future[Any]) -> None:
    try:
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            log.error("executions.broadcast_failed error=%s", f"{type(exc).__name__}: {exc}")
    finally:
        # Last, so that flush() returns only once the outcome is logged.
        with _pending_lock:
            _pending.discard(future)


async def _send_all(layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
    for group, message in messages:
        await asyncio.wait_for(layer.group_send(group, message), timeout=SEND_TIMEOUT_S)


def _messages(events: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Group payloads by run and by workflow, keeping seq order inside each group."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for payload in events:
        wire = wire_event(payload)
        by_group.setdefault(run_group(payload["run_id"]), []).append(wire)
        if payload.get("workflow_id"):
            by_group.setdefault(workflow_group(payload["workflow_id"]), []).append(wire)
    out = []
    for group, wires in by_group.items():
        wires.sort(key=lambda w: (w["run_id"], w["seq"]))
        out.append((group, {"type": MESSAGE_TYPE, "events": wires}))
    return out


def live_events_enabled() -> bool:
    return bool(getattr(settings, "ZYRA_FEATURES", {}).get("live_events", True))


class _RedisPublisher:
    """PUBLISH to a ``RedisPubSubChannelLayer``'s group channels from one daemon thread, with plain Redis clients.

    The layer's own ``group_send`` needs an event loop: a coroutine handed to a
    loop thread per publish, an ``asyncio.Lock`` and an async client round trip
    per group. On a worker that is a sixth of its CPU in a wide fan-out. Here a
    publish is an append to a queue; the thread takes everything queued, merges
    the messages of each group into one (in seq order: one frame instead of
    several downstream) and sends them in one pipeline per shard. The wire
    format is the layer's own: ``{prefix}__group__{group}`` channels, messages
    serialised by the layer, shards by the layer's consistent hash, so
    consumers receive them through the layer unchanged. The queue is FIFO:
    what one thread publishes goes out in order.
    """

    def __init__(self, layer: Any, clients: list[Any], prefix: str) -> None:
        self.layer = layer
        self.clients = clients
        self.prefix = prefix
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.queue: list[tuple[str, dict[str, Any]]] = []
        self.busy = False
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="zyra-broadcast", daemon=True)
        self.thread.start()

    @classmethod
    def for_layer(cls, layer: Any) -> _RedisPublisher | None:
        """A publisher for a pub/sub layer on plain Redis URLs; None for anything else (sentinels, ...)."""
        try:
            from channels_redis.pubsub import RedisPubSubChannelLayer
            from channels_redis.utils import decode_hosts
        except ImportError:
            return None
        if not isinstance(layer, RedisPubSubChannelLayer) or layer._args:
            return None
        import redis

        clients = []
        for host in decode_hosts(layer._kwargs.get("hosts")):
            options = dict(host)
            address = options.pop("address", None)
            if address is None or "master_name" in options:
                return None
            options.setdefault("socket_connect_timeout", SEND_TIMEOUT_S)
            options.setdefault("socket_timeout", SEND_TIMEOUT_S)
            clients.append(redis.Redis.from_url(address, **options))
        return cls(layer, clients, str(layer._kwargs.get("prefix", "asgi"))) if clients else None

    def submit(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        with self.cond:
            if len(self.queue) >= MAX_PENDING:
                log.error("executions.broadcast_dropped backlog=%d", len(self.queue))
                return
            self.queue.extend(messages)
            self.cond.notify()

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.queue or self.busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
        return True

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.stopped:
                    self.cond.wait()
                if not self.queue:
                    return
                batch, self.queue = self.queue, []
                self.busy = True
            try:
                self._send(batch)
            except Exception as exc:  # noqa: BLE001 - subscribers recover the events from the database
                log.error("executions.broadcast_failed error=%s", f"{type(exc).__name__}: {exc}")
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    def _send(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        from channels_redis.utils import _consistent_hash

        merged: dict[str, list[dict[str, Any]]] = {}
        for group, message in batch:
            merged.setdefault(group, []).extend(message["events"])
        pipes: dict[int, Any] = {}
        for group, wires in merged.items():
            wires.sort(key=lambda w: (w["run_id"], w["seq"]))
            channel = f"{self.prefix}__group__{group}"
            shard = _consistent_hash(channel, len(self.clients))
            pipe = pipes.get(shard)
            if pipe is None:
                pipe = pipes[shard] = self.clients[shard].pipeline(transaction=False)
            pipe.publish(channel, self.layer.serialize({"type": MESSAGE_TYPE, "events": wires}))
        for pipe in pipes.values():
            pipe.execute()


_publisher: _RedisPublisher | None = None
_publisher_layer: Any = None
_publisher_lock = threading.Lock()


def _publisher_for(layer: Any) -> _RedisPublisher | None:
    """The publisher of this process for ``layer`` (None: use the event-loop pump)."""
    global _publisher, _publisher_layer
    with _publisher_lock:
        current = _publisher
        if current is not None and current.layer is layer and current.pid == os.getpid() and current.thread.is_alive():
            return current
        if _publisher_layer is layer and current is None:
            return None  # this layer is not one the publisher speaks to
        if current is not None and current.pid == os.getpid():
            current.stop()  # settings changed the layer: the old thread drains and ends
        _publisher = _RedisPublisher.for_layer(layer)
        _publisher_layer = layer
        return _publisher


def publish(events: list[dict[str, Any]]) -> None:
    """Send each event payload to its run's and workflow's groups.

    Never blocks on the channel layer and never raises: a failed broadcast is
    logged, and subscribers recover the event from the database.
    """
    if not events or not live_events_enabled():
        return
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        if isinstance(layer, InMemoryChannelLayer):
            loop = _server_loop
            if loop is None or loop.is_closed() or not loop.is_running():
                return  # no consumer in this process: nobody to deliver to
        else:
            publisher = _publisher_for(layer)
            if publisher is not None:
                publisher.submit(_messages(events))
                return
            loop = _pump_loop()
        _submit(_send_all(layer, _messages(events)), loop)
    except Exception as exc:  # noqa: BLE001 - the caller's transaction already committed
        log.error("executions.broadcast_failed error=%s events=%d", f"{type(exc).__name__}: {exc}", len(events))


def flush(timeout: float = 5.0) -> bool:
    """Wait until every submitted broadcast finished (short-lived processes call it before exit)."""
    deadline = time.monotonic() + timeout
    publisher = _publisher
    if publisher is not None and publisher.pid == os.getpid() and not publisher.wait_idle(timeout):
        return False
    while True:
        with _pending_lock:
            pending = list(_pending)
        if not pending:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            pending[0].result(timeout=remaining)
        except Exception:  # noqa: BLE001,S110 - the outcome is logged by _done
            pass


atexit.register(flush, 2.0)


# ---------------------------------------------------------------------------
# Selector: stored events in the same shape (replay, REST, catch-up)
# ---------------------------------------------------------------------------


def run_events_after(
    *, run_id: uuid.UUID | str, workflow_id: object, after: int, limit: int, upto: int | None = None
) -> list[dict[str, Any]]:
    """Stored payloads of one run with ``after < seq [<= upto]``, in seq order, at most ``limit``."""
    from executions.models import RunEvent

    qs = RunEvent.objects.filter(run_id=run_id, seq__gt=after)
    if upto is not None:
        qs = qs.filter(seq__lte=upto)
    rows = qs.order_by("seq").values_list("seq", "type", "node_id", "ts", "data")[:limit]
    return [
        row_payload(seq=seq, type=type_, run_id=run_id, workflow_id=workflow_id, node_id=node_id, ts=ts, data=data)
        for seq, type_, node_id, ts, data in rows
    ]


def format_ts_now() -> str:
    return format_ts(datetime.now(UTC))
