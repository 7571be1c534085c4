"""Concurrent-run limits enforced by the database across workers (issue 8)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from django.utils.dateparse import parse_datetime

from executions import services
from executions.models import NodeRun, Run
from tests.support.factories import edge, http, make_workflow, node, wait_run
from tests.support.servers import LocalServer


def test_max_two_concurrent_runs_per_workflow(worker: Any, user: Any, server: LocalServer) -> None:
    server.slow("/work", 0.4)
    d = {"nodes": [node("start", "MANUAL"), http("work", server.url("/work"))], "edges": [edge("start", "work")]}
    wf = make_workflow(user, d, max_concurrent_runs=2)
    runs = [services.run_start(workflow=wf, inputs={"i": i}, user=user) for i in range(10)]
    assert sum(1 for r in runs if Run.objects.get(id=r.id).status == "running") <= 2
    finished = [wait_run(r.id, timeout=60) for r in runs]
    assert all(r.status == "succeeded" for r in finished)
    spans = []
    for r in finished:
        nrs = list(NodeRun.objects.filter(run=r))
        start = min(cast(datetime, parse_datetime(n.attempts[0]["started_at"])) for n in nrs)
        end = max(cast(datetime, n.finished_at) for n in nrs)
        spans.append((start, end, r.created_at))
    for s, _, _ in spans:
        assert sum(1 for s2, e2, _ in spans if s2 <= s < e2) <= 2
    # Waiting runs start in the order they were created.
    by_created = sorted(finished, key=lambda r: r.created_at)
    started = [r.started_at for r in by_created]
    assert started == sorted(started)
    assert server.count("/work") == 10


def test_queued_run_waiting_for_a_slot_can_be_cancelled(worker: Any, user: Any, server: LocalServer) -> None:
    server.slow("/work", 1.0)
    d = {"nodes": [node("start", "MANUAL"), http("work", server.url("/work"))], "edges": [edge("start", "work")]}
    wf = make_workflow(user, d, max_concurrent_runs=1)
    first = services.run_start(workflow=wf, inputs={}, user=user)
    second = services.run_start(workflow=wf, inputs={}, user=user)
    assert Run.objects.get(id=second.id).status == "queued"
    services.run_cancel(run=second)
    assert wait_run(first.id).status == "succeeded"
    second.refresh_from_db()
    assert second.status == "cancelled" and second.started_at is None
    assert server.count("/work") == 1
