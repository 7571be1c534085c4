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

- Redis layers (distributed): a daemon thread in this process owns one event
  loop, hence one Redis connection reused by every publish.
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
            loop = _pump_loop()
        _submit(_send_all(layer, _messages(events)), loop)
    except Exception as exc:  # noqa: BLE001 - the caller's transaction already committed
        log.error("executions.broadcast_failed error=%s events=%d", f"{type(exc).__name__}: {exc}", len(events))


def flush(timeout: float = 5.0) -> bool:
    """Wait until every submitted broadcast finished (short-lived processes call it before exit)."""
    deadline = time.monotonic() + timeout
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
