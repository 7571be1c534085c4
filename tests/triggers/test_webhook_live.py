"""Deliveries to a real daphne (the ASGI path: a fixed thread pool with persistent connections)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.db import connection

from executions.models import Run
from tests.executions.monitoring.support import AsgiServer, start_server
from tests.triggers.conftest import SECRET, payload, standard_headers, webhook_workflow
from triggers import services
from triggers.models import WebhookDelivery

POOL = 3
APP = "zyra-webhook-live-test"


@pytest.fixture
def live(transactional_db: Any) -> Iterator[AsgiServer]:
    db = connection.settings_dict["NAME"]
    # A distinct application_name tells this server's connections from the workers' on the same database.
    env = {"ZYRA_WEBHOOK_CONCURRENCY": str(POOL), "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db}?application_name={APP}"}
    server = start_server(db, "daphne-webhooks-test", env)
    yield server
    server.stop()


def _connections(db: str) -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s", [db, APP])
        return int(cur.fetchone()[0])


def test_live_server_accepts_each_delivery_once_with_bounded_connections(live: AsgiServer, user: Any) -> None:
    [ep] = services.webhook_endpoint_ensure(webhook_workflow(user))
    services.webhook_signing_secret_add(endpoint=ep, value=SECRET)
    ep.rate_limit_per_s = 0
    ep.save()
    db = connection.settings_dict["NAME"]
    baseline = _connections(db)
    url = live.http + ep.path
    body = payload()
    jobs = [(f"live-{i}", standard_headers(SECRET, body, f"live-{i}")) for i in range(30)]
    dup = standard_headers(SECRET, body, "live-dup")
    jobs += [("live-dup", dup)] * 10
    results: list[tuple[str, int, Any]] = []
    peak = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(len(jobs))

    def send(msg_id: str, headers: dict[str, str]) -> None:
        with httpx.Client(timeout=60) as client:
            barrier.wait(timeout=30)
            r = client.post(url, content=body, headers={**headers, "content-type": "application/json"})
        with lock:
            results.append((msg_id, r.status_code, r.json()))

    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _connections(db))
            stop.wait(0.02)
        connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=send, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    watcher.join(timeout=10)

    distinct = [r for r in results if r[0] != "live-dup"]
    assert all(status == 202 for _, status, _ in distinct), [r for r in distinct if r[1] != 202][:3]
    dups = sorted(status for msg, status, _ in results if msg == "live-dup")
    assert dups == [202] + [409] * 9, dups
    run_ids = {body["run_id"] for _, status, body in results if status == 202}
    assert len(run_ids) == 31
    assert set(map(str, Run.objects.filter(workflow=ep.workflow).values_list("id", flat=True))) == run_ids
    assert WebhookDelivery.objects.filter(endpoint=ep).count() == 31
    # 40 requests at once, but the server held at most POOL connections (+1: the
    # event-loop thread's, used by /healthz at start).
    assert 1 <= peak[0] <= POOL + 1, (peak[0], baseline)
