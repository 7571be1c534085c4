"""One channel-layer subscription per group and process, shared by its WebSocket subscribers.

Without this, every consumer joins the group itself: a broadcast to a run
watched by 200 clients becomes 200 channel-layer deliveries in the ASGI
process (200 queue puts, 200 msgpack decodes, 200 dispatch rounds through
Channels' ``await_many_dispatch``), each of which then writes one WebSocket
frame per event. Here one hub per event loop joins each group once, decodes
each message once and hands the (immutable) event list to every local
subscriber with a synchronous ``deliver`` call. A subscriber buffers what it
is given and a writer task of its own sends it, so a slow client never holds
up the others, and events that arrive while a writer is still busy are sent
together: under load the number of frames drops instead of the delay growing.

``frame_text`` builds the text of a batch frame once per process for a given
run and seq range, so subscribers that are in step share one string.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from typing import Any, Protocol

from executions.broadcast import MESSAGE_TYPE

log = logging.getLogger("executions.fanout")


class Subscriber(Protocol):
    def deliver(self, events: list[dict[str, Any]]) -> None:
        """Take the wire events of one broadcast; must not block or raise, and must not mutate them."""


class _Group:
    __slots__ = ("channel", "name", "ready", "subscribers", "task")

    def __init__(self, name: str) -> None:
        self.name = name
        self.subscribers: set[Subscriber] = set()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.channel = ""
        self.task: asyncio.Task[None] | None = None


class Hub:
    """The shared group subscriptions of one event loop (one ASGI server process)."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.groups: dict[str, _Group] = {}

    async def join(self, group: str, subscriber: Subscriber) -> None:
        """Deliver the group's broadcasts to ``subscriber`` from when this returns (or earlier)."""
        state = self.groups.get(group)
        if state is not None:
            state.subscribers.add(subscriber)
            await asyncio.shield(state.ready)
            return
        state = _Group(group)
        state.subscribers.add(subscriber)
        self.groups[group] = state
        try:
            state.channel = await self.layer.new_channel()
            await self.layer.group_add(group, state.channel)
            state.task = asyncio.ensure_future(self._receive(state))
        except BaseException as exc:
            if self.groups.get(group) is state:
                del self.groups[group]
            if isinstance(exc, Exception):
                state.ready.set_exception(exc)
                state.ready.exception()  # mark retrieved; joiners waiting on it re-raise it
            else:
                state.ready.cancel()
            raise
        state.ready.set_result(None)

    async def leave(self, group: str, subscriber: Subscriber) -> None:
        state = self.groups.get(group)
        if state is None or subscriber not in state.subscribers:
            return
        state.subscribers.discard(subscriber)
        if state.subscribers:
            return
        del self.groups[group]  # a later join starts a fresh subscription
        try:
            await asyncio.shield(state.ready)
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - set-up failed: nothing to tear down
            if not state.ready.done():
                raise
            return
        if state.task is not None:
            state.task.cancel()  # the Redis layer unsubscribes a channel whose receive is cancelled
        await self.layer.group_discard(group, state.channel)

    async def _receive(self, state: _Group) -> None:
        window = coalesce_s()
        last_delivery = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                message = await self.layer.receive(state.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening; subscribers resync from the database
                log.error("executions.fanout_receive_failed group=%s error=%s", state.name, f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)
                continue
            events = _events(message)
            if window > 0 and loop.time() - last_delivery < window:
                # A burst: the previous delivery was moments ago. Wait out the window and take
                # everything that arrived meanwhile, so that every subscriber writes one frame per
                # window instead of one per broadcast (the per-frame cost is what grows the delay).
                await asyncio.sleep(last_delivery + window - loop.time())
                events = events + await self._drain(state)
            last_delivery = loop.time()
            if not events:
                continue
            for subscriber in list(state.subscribers):
                try:
                    subscriber.deliver(events)
                except Exception:  # noqa: BLE001 - one broken subscriber must not starve the others
                    log.exception("executions.fanout_deliver_failed group=%s", state.name)

    async def _drain(self, state: _Group) -> list[dict[str, Any]]:
        """The events of the broadcasts already received for ``state`` (without waiting for more)."""
        queue = _layer_queue(self.layer, state.channel)
        events: list[dict[str, Any]] = []
        while queue is not None and not queue.empty():
            # receive() returns at once when its queue holds a message (it only waits on an empty one).
            events += _events(await self.layer.receive(state.channel))
        return events


def _events(message: dict[str, Any]) -> list[dict[str, Any]]:
    if message.get("type") != MESSAGE_TYPE:
        return []
    return list(message.get("events") or [])


def _layer_queue(layer: Any, channel: str) -> asyncio.Queue[Any] | None:
    """The local queue a layer keeps for ``channel`` (Redis pub/sub and in-memory layers), if it has one."""
    try:
        inner = layer._get_layer() if hasattr(type(layer), "_get_layer") else layer
        queue = inner.channels.get(channel)
    except Exception:  # noqa: BLE001 - another layer: no drain, one delivery per broadcast
        return None
    return queue if isinstance(queue, asyncio.Queue) else None


def coalesce_s() -> float:
    from django.conf import settings

    return max(0.0, float(getattr(settings, "ZYRA_WS_COALESCE_MS", 10))) / 1000.0


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub(layer: Any) -> Hub:
    """The hub of the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None or found.layer is not layer:
        found = _hubs[loop] = Hub(layer)
    return found


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------

_FRAMES: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()
_FRAMES_MAX = 256


def frame_text(wires: list[dict[str, Any]]) -> str:
    """``{"type":"batch","events":[...]}`` for the stored events of one run between two seqs, in order.

    Memoised by (run, first seq, last seq, count): committed events never
    change, so subscribers sending the same range share one string.
    """
    key = (str(wires[0]["run_id"]), int(wires[0]["seq"]), int(wires[-1]["seq"]), len(wires))
    text = _FRAMES.get(key)
    if text is None:
        text = batch_text(wires)
        _FRAMES[key] = text
        if len(_FRAMES) > _FRAMES_MAX:
            _FRAMES.popitem(last=False)
    return text


def batch_text(wires: list[dict[str, Any]]) -> str:
    return '{"type":"batch","events":[' + ",".join(w["text"] for w in wires) + "]}"
