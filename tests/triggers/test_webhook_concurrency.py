"""The same delivery arriving several times at once makes exactly one run (real concurrent transactions)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from executions.models import Run
from tests.triggers.conftest import SECRET, payload, post, standard_headers, webhook_workflow
from triggers import services
from triggers.models import WebhookDelivery


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_delivery_makes_one_run(user: Any) -> None:
    [ep] = services.webhook_endpoint_ensure(webhook_workflow(user))
    services.webhook_signing_secret_add(endpoint=ep, value=SECRET)
    ep.rate_limit_per_s = 0
    ep.save()
    body = payload()
    n = 8
    for round_ in range(3):
        headers = standard_headers(SECRET, body, f"msg_dup_{round_}")
        barrier = threading.Barrier(n)
        results: list[int] = []
        run_ids: list[str] = []
        lock = threading.Lock()

        def deliver(
            barrier: threading.Barrier = barrier,
            headers: dict[str, str] = headers,
            lock: Any = lock,
            results: list[int] = results,
            run_ids: list[str] = run_ids,
        ) -> None:
            try:
                client = Client()
                barrier.wait(timeout=30)
                r = post(client, ep, body, headers)
                with lock:
                    results.append(r.status_code)
                    if r.status_code == 202:
                        run_ids.append(r.json()["run_id"])
            finally:
                connection.close()

        threads = [threading.Thread(target=deliver) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(results) == [202] + [409] * (n - 1), results
        assert Run.objects.filter(workflow=ep.workflow, idempotency_key__endswith=f":msg_dup_{round_}").count() == 1
        assert WebhookDelivery.objects.get(endpoint=ep, delivery_id=f"msg_dup_{round_}").run_id is not None
        assert [str(Run.objects.get(idempotency_key__endswith=f":msg_dup_{round_}").pk)] == run_ids
    assert Run.objects.filter(workflow=ep.workflow).count() == 3
