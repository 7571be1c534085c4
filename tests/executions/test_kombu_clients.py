"""zyra.celery: kombu's Redis transport reuses one sync client per channel (it built one per publish and ack)."""

from __future__ import annotations

import uuid

from django.conf import settings
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

import zyra.celery  # noqa: F401 - applies the reuse


def test_one_sync_client_per_channel_and_pool_and_messages_still_flow() -> None:
    assert getattr(kombu_redis.Channel._create_client, "zyra_reused", False)
    name = f"zyra-test-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    with Connection(settings.CELERY_BROKER_URL) as conn:
        channel = conn.default_channel
        first = channel._create_client()
        assert channel._create_client() is first  # the same object, not a new redis.Redis
        assert channel._create_client(asynchronous=True) is not first  # BRPOP's client keeps its own connection
        producer = conn.Producer(serializer="json")
        for i in range(3):
            producer.publish({"n": i}, exchange=queue.exchange, routing_key=name, declare=[queue])
        got = []
        simple = conn.SimpleQueue(queue)
        for _ in range(3):
            message = simple.get(timeout=5)
            got.append(message.payload["n"])
            message.ack()
        simple.close()
        channel.queue_delete(name)
        assert got == [0, 1, 2]
        # A new pool (kombu drops its pools on a connection error) gets a new client.
        channel._pool = None
        assert channel._create_client() is not first
