"""executions.broadcast.publish: groups of run and workflow, feature flag, embedded loop, never raises."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings

from executions import broadcast


def payload(run_id: str, workflow_id: str, seq: int = 1, **data: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "type": "node.started",
        "run_id": run_id,
        "workflow_id": workflow_id,
        "node_id": "a",
        "ts": "2026-11-25T20:00:00.000Z",
        "data": {"status": "running", **data},
    }


async def _subscribe_and_publish(groups: list[str], events: list[dict[str, Any]], wait: float) -> list[dict[str, Any]]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    await asyncio.sleep(0.2)  # the Redis subscription is in place
    await asyncio.to_thread(broadcast.publish, events)  # from a worker-like thread
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            got.append(await asyncio.wait_for(layer.receive(channel), timeout=max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            break
    for group in groups:
        await layer.group_discard(group, channel)
    return got


def test_publish_reaches_the_run_and_workflow_groups_through_redis() -> None:
    run_id, wf_id = str(uuid.uuid4()), str(uuid.uuid4())
    events = [payload(run_id, wf_id, 2), payload(run_id, wf_id, 1)]
    got = asyncio.run(_subscribe_and_publish([broadcast.run_group(run_id), broadcast.workflow_group(wf_id)], events, 1.5))
    # One batch per group, in seq order, with the JSON text of each payload.
    assert len(got) == 2
    for message in got:
        assert message["type"] == "run.events"
        assert [w["seq"] for w in message["events"]] == [1, 2]
        assert message["events"][0]["text"] == broadcast.encode(events[1])


@override_settings(ZYRA_FEATURES={"live_events": False})
def test_feature_flag_off_broadcasts_nothing() -> None:
    run_id, wf_id = str(uuid.uuid4()), str(uuid.uuid4())
    got = asyncio.run(_subscribe_and_publish([broadcast.run_group(run_id)], [payload(run_id, wf_id)], 1.0))
    assert got == []


@override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}})
def test_embedded_in_memory_layer_is_fed_on_the_server_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    run_id, wf_id = str(uuid.uuid4()), str(uuid.uuid4())
    monkeypatch.setattr(broadcast, "_server_loop", None)
    broadcast.publish([payload(run_id, wf_id)])  # no consumer in this process: a quiet no-op

    async def main() -> list[dict[str, Any]]:
        broadcast.register_server_loop(asyncio.get_running_loop())
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(broadcast.run_group(run_id), channel)
        await asyncio.to_thread(broadcast.publish, [payload(run_id, wf_id, 7)])
        return [await asyncio.wait_for(layer.receive(channel), timeout=2)]

    got = asyncio.run(main())
    assert got[0]["events"][0]["seq"] == 7


@override_settings(
    CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}
)
def test_publish_never_blocks_or_raises_when_the_layer_is_down(caplog: pytest.LogCaptureFixture) -> None:
    run_id, wf_id = str(uuid.uuid4()), str(uuid.uuid4())
    caplog.set_level(logging.ERROR, logger="executions.broadcast")
    started = time.monotonic()
    broadcast.publish([payload(run_id, wf_id)])
    assert time.monotonic() - started < 0.2
    broadcast.flush(10)
    assert any("executions.broadcast_failed" in r.getMessage() for r in caplog.records)


def test_a_backlog_of_undeliverable_broadcasts_is_bounded(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    run_id, wf_id = str(uuid.uuid4()), str(uuid.uuid4())
    monkeypatch.setattr(broadcast, "MAX_PENDING", 0)
    caplog.set_level(logging.ERROR, logger="executions.broadcast")
    broadcast.publish([payload(run_id, wf_id)])
    assert any("executions.broadcast_dropped" in r.getMessage() for r in caplog.records)
    assert broadcast.flush(1)


def test_the_pubsub_layer_is_published_to_by_the_publisher_thread_not_an_event_loop() -> None:
    run_id, wf_id = str(uuid.uuid4()), str(uuid.uuid4())
    got = asyncio.run(_subscribe_and_publish([broadcast.run_group(run_id)], [payload(run_id, wf_id)], 1.0))
    assert [w["seq"] for m in got for w in m["events"]] == [1]
    publisher = broadcast._publisher
    assert publisher is not None and publisher.layer is get_channel_layer()
    assert not broadcast._pending  # nothing went through the event-loop pump


def test_what_is_queued_together_goes_out_as_one_message_per_group_in_seq_order() -> None:
    run_id, wf_id = str(uuid.uuid4()), str(uuid.uuid4())
    layer = get_channel_layer()
    publisher = broadcast._publisher_for(layer)
    assert publisher is not None

    async def main() -> list[dict[str, Any]]:
        channel = await layer.new_channel()
        await layer.group_add(broadcast.run_group(run_id), channel)
        await asyncio.sleep(0.2)
        # Two publishes (two committing threads, the later seq first) queued while the thread is busy.
        batch = broadcast._messages([payload(run_id, wf_id, 5)]) + broadcast._messages(
            [payload(run_id, wf_id, 3), payload(run_id, wf_id, 4)]
        )
        await asyncio.to_thread(publisher._send, batch)
        got = [await asyncio.wait_for(layer.receive(channel), timeout=2)]
        with contextlib.suppress(TimeoutError):
            got.append(await asyncio.wait_for(layer.receive(channel), timeout=0.5))
        await layer.group_discard(broadcast.run_group(run_id), channel)
        return got

    got = asyncio.run(main())
    assert len(got) == 1  # one message for the run group (the workflow group got its own)
    assert [w["seq"] for w in got[0]["events"]] == [3, 4, 5]
