"""Feature flags (ZYRA_FEATURES), each in both states.

Flags are read from settings. Where a flag is read inside a worker (breaker,
rate limit, live events), the test starts its own worker process with
``ZYRA_FEATURES=<flag>=off`` in its environment; ``parallel`` is read by
``run_start`` (the process that starts the run) and stored on the run;
``webhook_signatures`` is read by the web process.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.test import Client, override_settings
from django.utils import timezone

from executions import broadcast, services
from executions.models import CircuitBreaker, NodeRun, Run, RunEvent, ServicePolicy
from executions.resilience.outbound import service_key
from tests.support.factories import edge, http, make_workflow, node, statuses, wait_run
from tests.support.servers import LocalServer
from tests.support.workers import ProcessGroup, wait_until
from zyra.env import env_features

ALL_ON = {"parallel": True, "circuit_breaker": True, "rate_limit": True, "live_events": True, "webhook_signatures": True}


QUEUES = ("io", "cpu", "sweep")


@pytest.fixture(autouse=True)
def _only_our_workers() -> Any:
    """Workers of other tests (the session ``worker``) stop consuming while a flag test runs, then resume:
    a task they picked up would run with their flags, not the ones under test."""
    detached: list[str] = []
    _DETACHED.append(detached)
    yield
    _DETACHED.pop()
    if detached:
        from zyra.celery import app

        for queue in QUEUES:
            app.control.add_consumer(queue, destination=detached, reply=True, timeout=2.0)


_DETACHED: list[list[str]] = []


def _worker(group: ProcessGroup, name: str, features: str | None) -> None:
    """Exactly one worker consumes the queues: this group's, with ``ZYRA_FEATURES=features`` (None: all on)."""

    group.stop_all()
    group.env_extra.pop("ZYRA_FEATURES", None)
    if features is not None:
        group.env_extra["ZYRA_FEATURES"] = features
    group.start_worker(name, queues=",".join(QUEUES), pool="threads", concurrency=6)
    claim_queues(name)


def claim_queues(name: str) -> None:
    """Wait until worker ``name`` answers, then detach every other worker from the queues (see _only_our_workers)."""
    from zyra.celery import app

    deadline = time.monotonic() + 60
    names: list[str] = []
    while time.monotonic() < deadline:
        names = [n for reply in app.control.ping(timeout=1.0) for n in reply]
        if any(n.startswith(f"{name}@") for n in names):
            break
    else:
        raise AssertionError(f"worker {name} did not answer a ping in 60 s")
    others = [n for n in names if not n.startswith(f"{name}@") and n not in _DETACHED[-1]]
    if others:
        for queue in QUEUES:
            app.control.cancel_consumer(queue, destination=others, reply=True, timeout=2.0)
        _DETACHED[-1].extend(others)


def _start(user: Any, definition: dict[str, Any]) -> Run:
    return services.run_start(workflow=make_workflow(user, definition), inputs={}, user=user)


def _cancel(run: Run) -> None:
    run.refresh_from_db()
    if not run.is_terminal:
        services.run_cancel(run=run)


def test_flags_parse_from_the_environment() -> None:
    assert env_features("X_UNSET_FLAGS", ALL_ON) == ALL_ON
    import os

    os.environ["X_TEST_FLAGS"] = "parallel=off, live_events=OFF,rate_limit=on"
    try:
        flags = env_features("X_TEST_FLAGS", ALL_ON)
    finally:
        del os.environ["X_TEST_FLAGS"]
    assert flags == {**ALL_ON, "parallel": False, "live_events": False}


# --------------------------------------------------------------------------- parallel


def _two_slow_branches(server: LocalServer) -> dict[str, Any]:
    server.slow("/a", 0.8)
    server.slow("/b", 0.8)
    return {
        "nodes": [node("start", "MANUAL"), http("a", server.url("/a")), http("b", server.url("/b"))],
        "edges": [edge("start", "a"), edge("start", "b")],
    }


def _spans(run: Run) -> list[tuple[Any, Any]]:
    return [(n.started_at, n.finished_at) for n in NodeRun.objects.filter(run=run, node_id__in=["a", "b"]).order_by("started_at")]


def test_parallel_on_runs_branches_at_once_off_runs_them_one_by_one(process_group: ProcessGroup, user: Any, server: LocalServer) -> None:
    _worker(process_group, "flags-par", None)
    run = wait_run(_start(user, _two_slow_branches(server)).id, timeout=60)
    assert run.status == "succeeded" and run.sequential is False
    (_s1, f1), (s2, _f2) = _spans(run)
    assert s2 < f1, "with parallel=on the branches overlap"

    with override_settings(ZYRA_FEATURES={**ALL_ON, "parallel": False}):
        run = wait_run(_start(user, _two_slow_branches(server)).id, timeout=60)
    assert run.status == "succeeded" and run.sequential is True
    (_s1, f1), (s2, _f2) = _spans(run)
    assert f1 <= s2, "with parallel=off the second branch starts after the first finished"


# --------------------------------------------------------------------------- circuit breaker


def _open_breaker(url: str) -> str:
    key = service_key(url)
    now = timezone.now()
    CircuitBreaker.objects.update_or_create(
        key=key, defaults={"state": "open", "opened_at": now, "open_until": now + timedelta(minutes=10)}
    )
    return key


def test_circuit_breaker_on_defers_off_is_not_consulted(process_group: ProcessGroup, user: Any, server: LocalServer) -> None:
    _open_breaker(server.url("/svc"))
    d = {"nodes": [node("start", "MANUAL"), http("call", server.url("/svc"))], "edges": [edge("start", "call")]}

    _worker(process_group, "flags-cb-on", None)
    run = _start(user, d)
    nr = wait_until(
        lambda: NodeRun.objects.filter(run=run, node_id="call", status="deferred", defer_reason="circuit_open").first(),
        timeout=30,
        message="node deferred by the open breaker",
    )
    assert server.count("/svc") == 0 and nr.attempt <= 1  # deferral spends no retry budget
    _cancel(run)

    _worker(process_group, "flags-cb-off", "circuit_breaker=off")
    run = wait_run(_start(user, d).id, timeout=60)
    assert run.status == "succeeded", statuses(run)
    assert server.count("/svc") == 1
    assert CircuitBreaker.objects.get(key=service_key(server.url("/svc"))).state == "open"  # untouched: not consulted


# --------------------------------------------------------------------------- rate limit


def _burst(server: LocalServer, n: int = 4) -> dict[str, Any]:
    ServicePolicy.objects.update_or_create(key=service_key(server.url("/r")), defaults={"rate_per_s": 1.0, "burst": 1})
    return {
        "nodes": [node("start", "MANUAL")] + [http(f"r{i}", server.url(f"/r?i={i}")) for i in range(n)],
        "edges": [edge("start", f"r{i}") for i in range(n)],
    }


def test_rate_limit_on_defers_off_lets_everything_through(process_group: ProcessGroup, user: Any, server: LocalServer) -> None:
    _worker(process_group, "flags-rl-on", None)
    run = wait_run(_start(user, _burst(server)).id, timeout=60)
    assert run.status == "succeeded", statuses(run)
    deferred = RunEvent.objects.filter(run=run, type="node.deferred")
    assert deferred.exists() and {e.data.get("reason") for e in deferred} <= {"rate_limited", "upstream_429"}
    times = sorted(r.ts for r in server.requests if r.path.startswith("/r"))
    assert times[-1] - times[0] >= 2.5  # 4 calls at 1/s (burst 1) take at least 3 intervals, minus jitter

    _worker(process_group, "flags-rl-off", "rate_limit=off")
    before = len(server.requests)
    run = wait_run(_start(user, _burst(server)).id, timeout=60)
    assert run.status == "succeeded", statuses(run)
    assert not RunEvent.objects.filter(run=run, type="node.deferred").exists()
    times = sorted(r.ts for r in server.requests[before:])
    assert len(times) == 4 and times[-1] - times[0] < 1.0


# --------------------------------------------------------------------------- live events


def _in_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn`` and close the thread's own database connection (the test database is dropped at the end)."""
    from django.db import connection

    try:
        return fn(*args)
    finally:
        connection.close()


async def _collect(group: str, start: Any, wait: float) -> list[dict[str, Any]]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    await asyncio.sleep(0.2)
    run = await asyncio.to_thread(_in_thread, start)
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            got.append(await asyncio.wait_for(layer.receive(channel), timeout=max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            break
    await layer.group_discard(group, channel)
    await asyncio.to_thread(_in_thread, wait_run, run.id, 30)
    return got


@pytest.mark.parametrize("features,broadcasts", [(None, True), ("live_events=off", False)])
def test_live_events_flag(process_group: ProcessGroup, user: Any, features: str | None, broadcasts: bool) -> None:
    _worker(process_group, f"flags-live-{broadcasts}", features)
    wf = make_workflow(
        user,
        {"nodes": [node("start", "MANUAL"), node("c", "CALCULATOR", {"operation": "add", "a": 1, "b": 2})], "edges": [edge("start", "c")]},
    )

    def start() -> Run:
        # The web side's broadcasts (run.queued) follow this process's flag: off here too, so only the worker counts.
        with override_settings(ZYRA_FEATURES={**ALL_ON, "live_events": broadcasts}):
            return services.run_start(workflow=wf, inputs={}, user=user)

    got = asyncio.run(_collect(broadcast.workflow_group(wf.id), start, 4.0))
    run = Run.objects.get(workflow=wf)
    assert run.status == "succeeded"
    stored = list(RunEvent.objects.filter(run=run).values_list("type", flat=True))
    assert "node.succeeded" in stored and "run.succeeded" in stored  # stored in both states
    types = [w["type"] for m in got for w in m["events"]]
    if broadcasts:
        assert "node.succeeded" in types and "run.succeeded" in types
    else:
        assert types == []


# --------------------------------------------------------------------------- webhook signatures


@pytest.mark.parametrize("flag", [True, False])
def test_webhook_signature_enforcement_is_off_only_per_endpoint(user: Any, flag: bool) -> None:
    """The global flag never switches verification off: a signed endpoint rejects an unsigned delivery in
    both states; only an endpoint explicitly set to ``unsigned`` accepts one."""
    from triggers import services as triggers

    signed_wf = make_workflow(user, {"nodes": [node("hook", "WEBHOOK", {"signing": "standard_webhooks"})], "edges": []}, name="signed")
    open_wf = make_workflow(user, {"nodes": [node("hook", "WEBHOOK", {"signing": "unsigned"})], "edges": []}, name="open")
    [signed] = triggers.webhook_endpoint_ensure(signed_wf)
    [unsigned] = triggers.webhook_endpoint_ensure(open_wf)
    client = Client()
    with override_settings(ZYRA_FEATURES={**ALL_ON, "webhook_signatures": flag}):
        r = client.post(signed.path, b'{"a": 1}', content_type="application/json")
        assert r.status_code == 401, r.content
        assert r.json()["error"]["code"] in {"missing_signature", "invalid_signature", "no_signing_secret"}
        r = client.post(unsigned.path, b'{"a": 1}', content_type="application/json")
        assert r.status_code == 202, r.content
    assert Run.objects.filter(workflow=signed_wf).count() == 0
    assert Run.objects.filter(workflow=open_wf).count() == 1
