"""Circuit breaker against real PostgreSQL: state machine, one probe across processes, lease expiry, storage failure."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from executions.models import CircuitBreaker, CircuitState, RunEvent, ServicePolicy
from executions.nodes.base import Defer
from executions.resilience import outbound
from executions.resilience.breaker import (
    Breaker,
    BreakerConfig,
    CircuitOpen,
    Permit,
    breaker_flush,
    breaker_reset,
    service_state_load,
)
from tests.executions.resilience import procs
from tests.support.pg import second_connection
from tests.support.servers import LocalServer
from tests.support.workers import wait_until

T0 = datetime(2026, 11, 25, 20, 0, 0, tzinfo=UTC)
CFG = BreakerConfig(
    failure_rate_threshold=0.5,
    minimum_calls=4,
    window_s=10,
    bucket_s=1,
    open_wait_s=5.0,
    wait_multiplier=2.0,
    max_open_wait_s=60.0,
    probe_grace_s=1.0,
    half_open_recheck_s=1.0,
    slow_call_s=0.0,
    slow_call_rate_threshold=1.0,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def snap(key: str) -> Any:
    return service_state_load(key=key).breaker


def row(key: str) -> CircuitBreaker:
    return CircuitBreaker.objects.get(key=key)


# ----------------------------------------------------------------- state machine (pure DB, explicit clock)


@pytest.mark.django_db
def test_opens_on_failure_rate_once_minimum_calls_seen() -> None:
    b = Breaker(CFG)
    closed = Permit("svc", None)
    for _ in range(3):
        assert b.record(closed, "failure", now=at(0)) is None  # 3 calls < minimum 4
    assert row("svc").state == CircuitState.CLOSED
    assert b.record(closed, "success", now=at(1)) == "opened"  # 3 / 4 failures >= 50 %
    r = row("svc")
    assert r.state == CircuitState.OPEN and r.open_until == at(6) and r.consecutive_opens == 1
    assert r.total_calls == 4 and r.total_failures == 3
    with pytest.raises(CircuitOpen) as info:
        b.check("svc", snap("svc"), now=at(3))
    assert info.value.until == at(6)


@pytest.mark.django_db
def test_successes_keep_it_closed_and_old_failures_leave_the_window() -> None:
    b = Breaker(CFG)
    closed = Permit("svc", None)
    for _ in range(3):
        b.record(closed, "failure", now=at(0))
    for _ in range(4):  # 11 s later: the failures are outside the 10 s window
        assert b.record(closed, "success", now=at(11)) is None
    assert row("svc").state == CircuitState.CLOSED
    b.record(closed, "failure", now=at(12))
    assert b.record(closed, "success", now=at(12)) is None  # 1 / 6 failures
    assert row("svc").state == CircuitState.CLOSED


@pytest.mark.django_db
def test_half_open_admits_one_probe_success_closes() -> None:
    b = Breaker(CFG)
    for _ in range(4):
        b.record(Permit("svc", None), "failure", now=at(0))
    with pytest.raises(CircuitOpen):
        b.acquire("svc", snap("svc"), call_timeout_s=2, now=at(4.9))
    probe = b.acquire("svc", snap("svc"), call_timeout_s=2, now=at(5))
    assert probe.probe_token
    r = row("svc")
    assert r.state == CircuitState.HALF_OPEN and r.probe_lease_until == at(8)  # timeout 2 + grace 1
    with pytest.raises(CircuitOpen) as other:
        b.acquire("svc", snap("svc"), call_timeout_s=2, now=at(5.5))
    assert other.value.state == CircuitState.HALF_OPEN and other.value.until == at(6.5)  # recheck soon
    assert b.record(probe, "success", now=at(6)) == "closed"
    r = row("svc")
    assert r.state == CircuitState.CLOSED and r.window == [] and r.consecutive_opens == 0 and not r.probe_token
    assert b.acquire("svc", snap("svc"), call_timeout_s=2, now=at(6)).probe_token is None


@pytest.mark.django_db
def test_probe_failure_reopens_with_a_longer_wait() -> None:
    b = Breaker(CFG)
    for _ in range(4):
        b.record(Permit("svc", None), "failure", now=at(0))
    probe = b.acquire("svc", snap("svc"), call_timeout_s=2, now=at(5))
    assert b.record(probe, "failure", error="timeout: read", now=at(6)) == "reopened"
    r = row("svc")
    assert r.state == CircuitState.OPEN and r.consecutive_opens == 2
    assert r.open_until == at(6 + 10)  # 5 s * multiplier 2
    assert "timeout" in r.last_failure
    probe2 = b.acquire("svc", snap("svc"), call_timeout_s=2, now=at(16))
    assert b.record(probe2, "success", now=at(16.1)) == "closed"


@pytest.mark.django_db
def test_an_expired_probe_lease_is_taken_over_and_the_late_report_ignored() -> None:
    b = Breaker(CFG)
    for _ in range(4):
        b.record(Permit("svc", None), "failure", now=at(0))
    stuck = b.acquire("svc", snap("svc"), call_timeout_s=2, now=at(5))  # lease until 8
    with pytest.raises(CircuitOpen):
        b.acquire("svc", snap("svc"), call_timeout_s=2, now=at(7.9))
    fresh = b.acquire("svc", snap("svc"), call_timeout_s=2, now=at(8.0))
    assert fresh.probe_token and fresh.probe_token != stuck.probe_token
    assert b.record(stuck, "failure", now=at(8.5)) is None  # too late: not its decision any more
    assert row("svc").state == CircuitState.HALF_OPEN
    assert b.record(fresh, "success", now=at(8.6)) == "closed"


@pytest.mark.django_db
def test_a_probe_that_never_reached_the_service_frees_the_slot() -> None:
    b = Breaker(CFG)
    for _ in range(4):
        b.record(Permit("svc", None), "failure", now=at(0))
    probe = b.acquire("svc", snap("svc"), call_timeout_s=2, now=at(5))
    assert b.record(probe, "ignored", now=at(5.1)) is None
    assert b.acquire("svc", snap("svc"), call_timeout_s=2, now=at(5.2)).probe_token  # at once, not after the lease


@pytest.mark.django_db
def test_slow_calls_can_open_it() -> None:
    cfg = BreakerConfig(**{**CFG.__dict__, "slow_call_s": 0.5, "slow_call_rate_threshold": 0.75})
    b = Breaker(cfg)
    for i in range(3):
        assert b.record(Permit("svc", None), "success", duration_s=0.9, now=at(i * 0.1)) is None
    assert b.record(Permit("svc", None), "success", duration_s=0.9, now=at(0.4)) == "opened"


@pytest.mark.django_db
def test_policy_row_overrides_settings_and_percentages_are_accepted() -> None:
    ServicePolicy.objects.create(key="svc-p", failure_rate_threshold=25, minimum_calls=2, window_s=5, open_wait_s=1.5)
    state = service_state_load(key="svc-p")
    cfg = BreakerConfig.from_settings(state.policy)
    assert (cfg.failure_rate_threshold, cfg.minimum_calls, cfg.window_s, cfg.open_wait_s) == (0.25, 2, 5, 1.5)
    assert service_state_load(key="other").policy is None


@pytest.mark.django_db
def test_reset_closes_by_hand() -> None:
    b = Breaker(CFG)
    for _ in range(4):
        b.record(Permit("svc", None), "failure", now=at(0))
    assert breaker_reset(key="svc", actor="test")
    assert row("svc").state == CircuitState.CLOSED
    assert not breaker_reset(key="missing")


@pytest.mark.django_db
def test_transitions_are_recorded_on_the_causing_run(user: Any) -> None:
    from executions import services
    from tests.support.factories import make_workflow, node

    wf = make_workflow(user, {"nodes": [node("start", "MANUAL")], "edges": []})
    run = services.run_start(workflow=wf, inputs={}, user=user)
    b = Breaker(CFG)
    for _ in range(4):
        b.record(Permit("svc-ev", None), "failure", now=timezone.now(), run_id=str(run.id), node_id="call")
    opened = RunEvent.objects.filter(run=run, type="circuit.opened").get()
    assert opened.node_id == "call" and opened.data["service"] == "svc-ev" and opened.data["transition"] == "opened"
    CircuitBreaker.objects.filter(key="svc-ev").update(open_until=timezone.now() - timedelta(seconds=1))
    probe = b.acquire("svc-ev", snap("svc-ev"), call_timeout_s=1, run_id=str(run.id), node_id="call")
    b.record(probe, "success", run_id=str(run.id), node_id="call")
    types = list(RunEvent.objects.filter(run=run, type__startswith="circuit.").order_by("seq").values_list("type", flat=True))
    assert types == ["circuit.opened", "circuit.half_opened", "circuit.closed"]


# ----------------------------------------------------------------- through outbound.request


@pytest.mark.django_db
def test_5xx_opens_it_4xx_does_not_and_other_services_are_untouched(server: LocalServer) -> None:
    other = LocalServer()
    try:
        key, other_key = outbound.service_key(server.base), outbound.service_key(other.base)
        ServicePolicy.objects.create(key=key, minimum_calls=3, failure_rate_threshold=0.5, open_wait_s=30)
        server.responses("/missing", [(404, {"error": "nope"})])
        for _ in range(5):
            assert outbound.request(None, "GET", server.url("/missing")).status == 404
        assert row(key).state == CircuitState.CLOSED
        server.responses("/down", [(503, {"error": "down"})])
        for _ in range(4):
            assert outbound.request(None, "GET", server.url("/down")).status == 503
        assert row(key).state == CircuitState.CLOSED  # 4 failures / 9 calls: below 50 %, the 404s count as successes
        assert outbound.request(None, "GET", server.url("/down")).status == 503  # 5 / 10
        r = row(key)
        assert r.state == CircuitState.OPEN and r.last_failure == "HTTP 503"
        before = len(server.requests)
        with pytest.raises(Defer) as info:
            outbound.request(None, "GET", server.url("/anything"))
        assert info.value.reason == "circuit_open" and info.value.until == r.open_until
        assert len(server.requests) == before  # the open breaker sent nothing
        assert outbound.request(None, "GET", other.url("/fine")).status == 200  # another service is unaffected
        assert not CircuitBreaker.objects.filter(key=other_key, state=CircuitState.OPEN).exists()
        with override_settings(ZYRA_FEATURES={"circuit_breaker": False, "rate_limit": True}):
            assert outbound.request(None, "GET", server.url("/flag-off")).status == 200
    finally:
        other.close()


@pytest.mark.django_db
def test_timeouts_and_refused_connections_count_as_failures(server: LocalServer) -> None:
    server.hang("/hang", 2)
    ServicePolicy.objects.create(key="svc-t", minimum_calls=2, failure_rate_threshold=1.0)
    for _ in range(2):
        with pytest.raises(Exception) as info:
            outbound.request(None, "GET", server.url("/hang"), service="svc-t", timeout=0.3)
        assert getattr(info.value, "code", None) == "timeout"
    assert row("svc-t").state == CircuitState.OPEN


# ----------------------------------------------------------------- across processes


def _spawn(target: Any, *args: Any) -> multiprocessing.process.BaseProcess:
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _open_expired(key: str) -> None:
    now = timezone.now()
    CircuitBreaker.objects.update_or_create(
        key=key,
        defaults={
            "state": CircuitState.OPEN,
            "opened_at": now - timedelta(seconds=60),
            "open_until": now - timedelta(seconds=1),
            "consecutive_opens": 1,
        },
    )


@pytest.mark.timeout(120)
def test_exactly_one_probe_across_four_processes(transactional_db: Any, server: LocalServer) -> None:
    db_name = connection.settings_dict["NAME"]
    _open_expired("svc-probe")
    server.slow("/probe", 1.0)  # the probe is in flight while the others arrive
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    workers = [_spawn(procs.call_once, db_name, {}, server.url("/probe"), "svc-probe", 10.0, barrier, out) for _ in range(4)]
    results = [out.get(timeout=90) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    called = [r for r in results if r[0] == "called"]
    deferred = [r for r in results if r[0] == "deferred"]
    assert len(called) == 1 and called[0][1] == 200, results
    assert len(deferred) == 3 and {r[1] for r in deferred} == {"circuit_open"}, results
    assert server.count("/probe") == 1
    assert row("svc-probe").state == CircuitState.CLOSED
    # The deferred callers come back and go through (no manual reset).
    for _ in range(3):
        assert outbound.request(None, "GET", server.url("/after"), service="svc-probe").status == 200


@pytest.mark.timeout(120)
def test_a_probe_whose_worker_dies_does_not_wedge_the_breaker(transactional_db: Any, server: LocalServer) -> None:
    db_name = connection.settings_dict["NAME"]
    _open_expired("svc-hang")
    server.hang("/hang", 30)
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(1), ctx.Queue()
    env = {"ZYRA_BREAKER_PROBE_GRACE_S": "0.5"}
    probe = _spawn(procs.call_once, db_name, env, server.url("/hang"), "svc-hang", 2.0, barrier, out)
    wait_until(lambda: server.count("/hang") == 1, 60, message="the probe to reach the server")
    assert probe.pid is not None
    os.kill(probe.pid, signal.SIGKILL)  # the worker dies mid-probe: it will never report
    probe.join(timeout=10)
    r = row("svc-hang")
    assert r.state == CircuitState.HALF_OPEN and r.probe_lease_until is not None
    with pytest.raises(Defer) as info:
        outbound.request(None, "GET", server.url("/ok"), service="svc-hang", timeout=2)
    assert info.value.reason == "circuit_open"
    assert info.value.until <= r.probe_lease_until
    lease_left = (r.probe_lease_until - timezone.now()).total_seconds()
    assert lease_left <= 2.5
    time.sleep(max(0.0, lease_left) + 0.1)
    assert outbound.request(None, "GET", server.url("/ok"), service="svc-hang", timeout=2).status == 200
    assert server.count("/ok") == 1
    assert row("svc-hang").state == CircuitState.CLOSED


@pytest.mark.timeout(60)
def test_a_hanging_probe_times_out_and_reopens(transactional_db: Any, server: LocalServer) -> None:
    _open_expired("svc-slow")
    server.hang("/hang", 10)
    start = time.monotonic()
    with pytest.raises(Exception) as info:
        outbound.request(None, "GET", server.url("/hang"), service="svc-slow", timeout=1.0)
    assert getattr(info.value, "code", None) == "timeout"
    assert time.monotonic() - start < 3
    r = row("svc-slow")
    assert r.state == CircuitState.OPEN and r.consecutive_opens == 2
    assert r.open_until is not None and r.open_until > timezone.now()
    assert r.probe_token == ""


# ----------------------------------------------------------------- storage failure: fail open, loudly


@pytest.mark.timeout(60)
def test_breaker_storage_failure_fails_open_and_logs(transactional_db: Any, server: LocalServer, caplog: Any) -> None:
    """A real storage failure: another session holds an exclusive lock on the breaker table,
    so every breaker statement hits its lock timeout. The call still goes through."""
    outbound.request(None, "GET", server.url("/warm"), service="svc-db")  # the row exists
    assert breaker_flush(10)
    with second_connection() as blocker:
        blocker.execute(f"LOCK TABLE {CircuitBreaker._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        caplog.set_level(logging.ERROR, logger="executions.resilience")
        with override_settings(ZYRA_BREAKER_DB_TIMEOUT_MS=200):
            start = time.monotonic()
            response = outbound.request(None, "GET", server.url("/through"), service="svc-db")
            elapsed = time.monotonic() - start
            assert breaker_flush(10)  # the outcome write (write-behind) also meets the lock, and gives up
        blocker.rollback()
    assert response.status == 200 and server.count("/through") == 1
    assert elapsed < 3
    failures = [r for r in caplog.records if r.getMessage() == "executions.breaker_storage_failed"]
    assert {getattr(r, "op", None) for r in failures} >= {"load", "record"}
    assert all(getattr(r, "policy", None) == "fail_open" for r in failures)
    assert row("svc-db").total_calls == 1  # the call during the outage was not recorded, and nothing broke


def test_write_behind_stores_every_outcome_and_opens_off_the_call_path(transactional_db: Any, server: LocalServer) -> None:
    key = outbound.service_key(server.base)
    ServicePolicy.objects.create(key=key, minimum_calls=5, failure_rate_threshold=0.5, open_wait_s=30)
    server.responses("/ok", [(200, {"ok": True})])
    server.responses("/down", [(503, {"error": "down"})])
    for _ in range(10):
        assert outbound.request(None, "GET", server.url("/ok")).status == 200
    assert breaker_flush(10)
    r = row(key)
    assert r.total_calls == 10 and r.total_failures == 0 and r.state == CircuitState.CLOSED
    for _ in range(10):
        assert outbound.request(None, "GET", server.url("/down")).status == 503
    assert breaker_flush(10)
    r = row(key)
    assert r.state == CircuitState.OPEN and r.total_calls == 20 and r.total_failures == 10
    with pytest.raises(Defer):
        outbound.request(None, "GET", server.url("/ok"))


def test_write_behind_folds_successes_for_a_window_and_writes_at_once_on_a_failure(transactional_db: Any, server: LocalServer) -> None:
    """Successes wait up to ZYRA_BREAKER_WRITE_WINDOW_MS to be folded into one write (one service's
    calls all update one row); a failure writes what has queued at once, so the counts it is judged on
    hold every success before it."""
    key = outbound.service_key(server.base)
    server.responses("/ok", [(200, {"ok": True})])
    server.responses("/down", [(503, {"error": "down"})])
    with override_settings(ZYRA_BREAKER_WRITE_WINDOW_MS=3000):
        for _ in range(5):
            assert outbound.request(None, "GET", server.url("/ok")).status == 200
        time.sleep(0.5)
        # Still folding: with no window, the five would be stored by now.
        assert not CircuitBreaker.objects.filter(key=key, total_calls__gt=0).exists()
        start = time.monotonic()
        assert outbound.request(None, "GET", server.url("/down")).status == 503
        wait_until(lambda: CircuitBreaker.objects.filter(key=key, total_calls=6).exists(), timeout=2.0)
        assert time.monotonic() - start < 2.0  # well inside the 3 s window: the failure did not wait for it
        r = row(key)
        assert (r.total_calls, r.total_failures, r.state) == (6, 1, CircuitState.CLOSED)
        # A flush does not wait for the window either.
        for _ in range(3):
            outbound.request(None, "GET", server.url("/ok"))
        start = time.monotonic()
        assert breaker_flush(10)
        assert time.monotonic() - start < 1.0
        assert row(key).total_calls == 9
