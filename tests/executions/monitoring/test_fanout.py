"""executions.fanout: one group subscription per process shared by its subscribers; batch frame text."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer

from executions import broadcast, fanout


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def deliver(self, events: list[dict[str, Any]]) -> None:
        self.batches.append(events)

    @property
    def seqs(self) -> list[int]:
        return [w["seq"] for batch in self.batches for w in batch]


def wire(run_id: str, seq: int) -> dict[str, Any]:
    return broadcast.wire_event(
        broadcast.row_payload(seq=seq, type="node.started", run_id=run_id, workflow_id="wf", node_id=f"n{seq}", ts="t", data={})
    )


async def _until(predicate: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def _share_one_subscription(layer: Any) -> None:
    run_id = str(uuid.uuid4())
    group = broadcast.run_group(run_id)
    hub = fanout.Hub(layer)
    subs = [Recorder() for _ in range(3)]
    await asyncio.gather(*(hub.join(group, s) for s in subs))  # concurrent joins share one set-up
    assert list(hub.groups) == [group] and hub.groups[group].subscribers == set(subs)
    await asyncio.sleep(0.2)  # the Redis subscription is in place
    await layer.group_send(group, {"type": broadcast.MESSAGE_TYPE, "events": [wire(run_id, 1), wire(run_id, 2)]})
    await layer.group_send(group, {"type": "something.else"})  # ignored
    await layer.group_send(group, {"type": broadcast.MESSAGE_TYPE, "events": [wire(run_id, 3)]})
    await _until(lambda: all(s.seqs == [1, 2, 3] for s in subs))
    assert [s.seqs for s in subs] == [[1, 2, 3]] * 3
    # Decoded once per process: every subscriber got the very same list objects.
    assert subs[0].batches[0] is subs[1].batches[0] is subs[2].batches[0]

    await hub.leave(group, subs[0])
    await layer.group_send(group, {"type": broadcast.MESSAGE_TYPE, "events": [wire(run_id, 4)]})
    await _until(lambda: subs[1].seqs[-1] == 4 and subs[2].seqs[-1] == 4)
    await asyncio.sleep(0.1)
    assert subs[0].seqs == [1, 2, 3] and subs[1].seqs == subs[2].seqs == [1, 2, 3, 4]

    task = hub.groups[group].task
    await hub.leave(group, subs[1])
    await hub.leave(group, subs[2])
    assert hub.groups == {}
    await asyncio.sleep(0.05)
    assert task is not None and task.cancelled()
    # A new subscriber starts a fresh subscription.
    late = Recorder()
    await hub.join(group, late)
    await asyncio.sleep(0.2)
    await layer.group_send(group, {"type": broadcast.MESSAGE_TYPE, "events": [wire(run_id, 5)]})
    await _until(lambda: late.seqs == [5])
    assert late.seqs == [5]
    await hub.leave(group, late)


def test_subscribers_share_one_redis_subscription() -> None:
    layer = get_channel_layer()
    assert not isinstance(layer, InMemoryChannelLayer)
    asyncio.run(_share_one_subscription(layer))


def test_subscribers_share_one_in_memory_subscription() -> None:
    asyncio.run(_share_one_subscription(InMemoryChannelLayer()))


def test_a_failing_subscriber_does_not_starve_the_others(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def deliver(self, events: list[dict[str, Any]]) -> None:
            raise RuntimeError("boom")

    async def scenario() -> list[int]:
        layer = InMemoryChannelLayer()
        hub = fanout.Hub(layer)
        good = Recorder()
        await hub.join("g", Broken())
        await hub.join("g", good)
        await layer.group_send("g", {"type": broadcast.MESSAGE_TYPE, "events": [wire("r", 1)]})
        await _until(lambda: good.seqs == [1])
        return good.seqs

    assert asyncio.run(scenario()) == [1]
    assert "executions.fanout_deliver_failed" in caplog.text


def test_batch_frame_is_the_events_in_order_and_built_once_per_range() -> None:
    run_id = str(uuid.uuid4())
    wires = [wire(run_id, seq) for seq in (7, 8, 9)]
    text = fanout.frame_text(wires)
    body = json.loads(text)
    assert body["type"] == "batch"
    assert body["events"] == [json.loads(w["text"]) for w in wires]
    assert fanout.frame_text([dict(w) for w in wires]) is text  # shared by subscribers sending the same range
    assert fanout.frame_text(wires[:2]) is not text


async def _burst(layer: Any) -> list[list[int]]:
    """One broadcast after a quiet spell, then three in quick succession (a run's burst)."""
    run_id = str(uuid.uuid4())
    group = broadcast.run_group(run_id)
    hub = fanout.Hub(layer)
    sub = Recorder()
    await hub.join(group, sub)
    await asyncio.sleep(0.2)  # the Redis subscription is in place
    await layer.group_send(group, {"type": broadcast.MESSAGE_TYPE, "events": [wire(run_id, 1)]})
    await _until(lambda: sub.seqs == [1])
    for seq in (2, 3, 4):
        await layer.group_send(group, {"type": broadcast.MESSAGE_TYPE, "events": [wire(run_id, seq)]})
    await _until(lambda: sub.seqs == [1, 2, 3, 4])
    await hub.leave(group, sub)
    return [[w["seq"] for w in batch] for batch in sub.batches]


@pytest.mark.parametrize("redis_layer", [True, False], ids=["redis", "in-memory"])
def test_a_burst_of_broadcasts_is_delivered_once_per_window(redis_layer: bool, settings: Any) -> None:
    settings.ZYRA_WS_COALESCE_MS = 300  # wide enough that the three sends land inside it on a loaded machine
    layer = get_channel_layer() if redis_layer else InMemoryChannelLayer()
    # The first broadcast after a quiet spell goes at once; the burst that follows goes together.
    assert asyncio.run(_burst(layer)) == [[1], [2, 3, 4]]


def test_without_a_window_every_broadcast_is_its_own_delivery(settings: Any) -> None:
    settings.ZYRA_WS_COALESCE_MS = 0

    async def scenario() -> list[list[int]]:
        layer = InMemoryChannelLayer()
        hub = fanout.Hub(layer)
        sub = Recorder()
        await hub.join("g", sub)
        for seq in (1, 2, 3):
            await layer.group_send("g", {"type": broadcast.MESSAGE_TYPE, "events": [wire("r", seq)]})
            await _until(lambda seq=seq: sub.seqs[-1:] == [seq])
        return [[w["seq"] for w in batch] for batch in sub.batches]

    assert asyncio.run(scenario()) == [[1], [2], [3]]
