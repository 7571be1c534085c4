"""Rate limits shared by all workers (GCRA in Redis) and upstream 429 blocks."""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import override_settings

from executions.models import ServicePolicy
from executions.nodes.base import Defer
from executions.resilience import outbound
from executions.resilience.ratelimit import PREFIX, RateLimit, RateLimited, RateLimiter, upstream_block
from tests.executions.resilience import procs
from tests.support.servers import LocalServer


@pytest.fixture(autouse=True)
def clean_limiter_keys() -> Iterator[None]:
    client = redis.Redis.from_url(settings.REDIS_URL)

    def wipe() -> None:
        for key in client.scan_iter(PREFIX + "*"):
            client.delete(key)

    wipe()
    yield
    wipe()


@override_settings(ZYRA_RATE_LIMIT_HEADROOM=0.0)  # exact GCRA arithmetic, no jitter headroom
def test_gcra_spaces_calls_by_the_exact_interval() -> None:
    limiter = RateLimiter(RateLimit(rate_per_s=10, burst=1))
    limiter.acquire("svc-gcra")
    with pytest.raises(RateLimited) as info:
        limiter.acquire("svc-gcra")
    assert info.value.reason == "rate_limited"
    assert 0.05 < info.value.wait_s <= 0.1
    time.sleep(info.value.wait_s + 0.005)
    limiter.acquire("svc-gcra")  # exactly when it said


@override_settings(ZYRA_RATE_LIMIT_HEADROOM=0.0)  # exact GCRA arithmetic, no jitter headroom
def test_burst_then_rate() -> None:
    limiter = RateLimiter(RateLimit(rate_per_s=5, burst=4))
    for _ in range(4):
        limiter.acquire("svc-burst")
    with pytest.raises(RateLimited) as info:
        limiter.acquire("svc-burst")
    assert 0.1 < info.value.wait_s <= 0.2
    RateLimiter(RateLimit(rate_per_s=5, burst=4)).acquire("svc-other")  # keys are independent


def test_upstream_block_refuses_every_caller_until_it_expires() -> None:
    assert upstream_block(key="svc-429", seconds=0.5) == 0.5
    for limit in (RateLimit(100, 100), RateLimit(0, 1)):  # limited and unlimited services alike
        with pytest.raises(RateLimited) as info:
            RateLimiter(limit).acquire("svc-429")
        assert info.value.reason == "upstream_429" and 0.3 < info.value.wait_s <= 0.5
    upstream_block(key="svc-429", seconds=0.1)  # a shorter block never shortens a longer one
    with pytest.raises(RateLimited):
        RateLimiter(RateLimit(100, 100)).acquire("svc-429")
    time.sleep(0.55)
    RateLimiter(RateLimit(100, 100)).acquire("svc-429")


@override_settings(ZYRA_RATE_LIMIT_HEADROOM=0.0)  # exact GCRA arithmetic, no jitter headroom
def test_embedded_mode_uses_the_in_process_limiter() -> None:
    with override_settings(REDIS_URL=""):
        limiter = RateLimiter(RateLimit(rate_per_s=10, burst=1))
        limiter.acquire("svc-local")
        with pytest.raises(RateLimited) as info:
            limiter.acquire("svc-local")
        assert 0.05 < info.value.wait_s <= 0.1
        upstream_block(key="svc-local-429", seconds=1)
        with pytest.raises(RateLimited) as blocked:
            limiter.acquire("svc-local-429")
        assert blocked.value.reason == "upstream_429"
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert not list(client.scan_iter(PREFIX + "*svc-local*"))  # Redis was not used


def test_redis_down_fails_open_and_logs(caplog: Any) -> None:
    caplog.set_level(logging.ERROR, logger="executions.resilience")
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        for _ in range(3):
            RateLimiter(RateLimit(rate_per_s=1, burst=1)).acquire("svc-down")
    assert [r.getMessage() for r in caplog.records].count("executions.ratelimit_storage_failed") == 3


@pytest.mark.django_db
def test_a_limited_call_is_deferred_by_the_exact_wait_and_not_sent(server: LocalServer) -> None:
    key = outbound.service_key(server.base)
    ServicePolicy.objects.create(key=key, rate_per_s=2, burst=1)
    assert outbound.request(None, "GET", server.url("/a")).status == 200
    with pytest.raises(Defer) as info:
        outbound.request(None, "GET", server.url("/a"))
    assert info.value.reason == "rate_limited"
    from django.utils import timezone

    wait = (info.value.until - timezone.now()).total_seconds()
    from django.conf import settings

    # The rest of the 0.5 s interval (widened by the jitter headroom), less whatever the first call took.
    assert 0 < wait <= 0.5 * (1 + settings.ZYRA_RATE_LIMIT_HEADROOM)
    assert server.count("/a") == 1
    with override_settings(ZYRA_FEATURES={"circuit_breaker": True, "rate_limit": False}):
        assert outbound.request(None, "GET", server.url("/a")).status == 200  # the flag switches it off


@pytest.mark.django_db
def test_the_slot_is_taken_only_once_the_process_client_exists(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process's first call used to build its HTTP client (TLS context) after the limiter's grant and
    reach the service up to 0.3 s late, bunched with the next calls: 11 calls in one second at 10/s."""
    import os

    from executions.resilience import safe_http

    ServicePolicy.objects.create(key=outbound.service_key(server.base), rate_per_s=50, burst=1)
    for key in [k for k in safe_http._clients if k[0] == os.getpid()]:
        monkeypatch.delitem(safe_http._clients, key)  # this process has not called out yet
    seen: list[bool] = []
    original = RateLimiter.acquire

    def spy(self: RateLimiter, key: str) -> None:
        seen.append(any(k[0] == os.getpid() for k in safe_http._clients))
        original(self, key)

    monkeypatch.setattr(RateLimiter, "acquire", spy)
    assert outbound.request(None, "GET", server.url("/first")).status == 200
    assert seen == [True]


@pytest.mark.django_db
def test_a_429_with_retry_after_blocks_the_service(server: LocalServer) -> None:
    server.route("/busy", lambda req: (429, {"Retry-After": "1", "Content-Type": "application/json"}, b'{"slow": "down"}'))
    response = outbound.request(None, "GET", server.url("/busy"))
    assert response.status == 429
    with pytest.raises(Defer) as info:
        outbound.request(None, "GET", server.url("/elsewhere"))
    assert info.value.reason == "upstream_429"
    assert server.count("/elsewhere") == 0
    time.sleep(1.05)
    assert outbound.request(None, "GET", server.url("/elsewhere")).status == 200


def _per_second(timestamps: list[float]) -> Counter[int]:
    return Counter(int(ts) for ts in timestamps)


@pytest.mark.timeout(120)
def test_100_calls_at_10_per_s_over_3_processes_never_exceed_the_limit(transactional_db: Any, server: LocalServer) -> None:
    db_name = connection.settings_dict["NAME"]
    ServicePolicy.objects.create(key="svc-10", rate_per_s=10, burst=1)
    ctx = multiprocessing.get_context("spawn")
    barrier, out, counter = ctx.Barrier(3), ctx.Queue(), ctx.Value("i", 0)
    workers = [
        ctx.Process(
            target=procs.call_until_done,
            args=(db_name, {}, server.url("/limited"), "svc-10", counter, 100, barrier, out, 60.0),
            daemon=True,
        )
        for _ in range(3)
    ]
    for w in workers:
        w.start()
    results = [out.get(timeout=100) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert sum(r[1] for r in results) == 100, results  # all complete
    assert all(r[1] > 0 for r in results), results  # the work really was spread over 3 processes
    assert sum(r[2].get("rate_limited", 0) for r in results) > 0  # and the limiter really deferred some
    stamps = sorted(r.ts for r in server.requests if r.path.startswith("/limited"))
    assert len(stamps) == 100
    per_second = _per_second(stamps)
    assert max(per_second.values()) <= 10, sorted(per_second.items())
    # Sliding check as well: any 11 consecutive requests span about a second (arrival jitter on
    # a loaded 2-core box can shift one request by tens of ms, hence the tolerance).
    assert all(stamps[i + 10] - stamps[i] >= 0.8 for i in range(len(stamps) - 10))
    assert stamps[-1] - stamps[0] >= 9.0


@pytest.mark.timeout(120)
def test_retry_after_2_blocks_every_worker_for_2_seconds(transactional_db: Any, server: LocalServer) -> None:
    db_name = connection.settings_dict["NAME"]
    seen = itertools.count()

    def first_429(req: Any) -> tuple[int, dict[str, str], bytes]:
        if next(seen) == 0:
            return 429, {"Retry-After": "2", "Content-Type": "application/json"}, b'{"error": "slow down"}'
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'

    server.route("/api", first_429)
    ctx = multiprocessing.get_context("spawn")
    barrier, out, counter, go = ctx.Barrier(4), ctx.Queue(), ctx.Value("i", 0), ctx.Event()
    workers = [
        ctx.Process(
            target=procs.call_until_done, args=(db_name, {}, server.url("/api"), "svc-ra", counter, 12, barrier, out, 60.0, go), daemon=True
        )
        for _ in range(3)
    ]
    for w in workers:
        w.start()
    barrier.wait(timeout=60)  # every worker is up and about to call
    response = outbound.request(None, "GET", server.url("/api"), service="svc-ra")
    assert response.status == 429
    answered = time.time()
    go.set()
    results = [out.get(timeout=100) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert sum(r[1] for r in results) == 12, results  # work resumed and completed
    stamps = sorted(r.ts for r in server.requests)
    assert len(stamps) == 13  # the 429 plus 12 successes
    assert stamps[0] <= answered
    after = [ts - stamps[0] for ts in stamps[1:]]
    assert min(after) >= 1.95, f"a worker reached the service {min(after):.3f}s after the 429"
    assert min(after) < 4.0  # and work resumed promptly after the block
    assert all(r[2].get("upstream_429", 0) >= 1 for r in results), results  # every worker was deferred, none failed
    assert all(min(r[3].values()) - answered < 1.9 for r in results)  # ...while the block was on
