"""Rate limit per service key, shared by every worker: GCRA in Redis, one atomic Lua script.

GCRA (generic cell rate algorithm) keeps one number per key, the theoretical
arrival time (TAT) of the next call. With emission interval ``T = 1/rate``
and a burst of ``b`` calls, a call at ``now`` is allowed when
``max(TAT, now) + T - b*T <= now``; then ``TAT = max(TAT, now) + T``.
Otherwise it is refused with the exact wait until that inequality holds.
The script reads Redis' own clock (``TIME``), so workers on machines with
skewed clocks still share one schedule.

An upstream ``429`` with ``Retry-After`` sets a second key with a PX expiry:
while it lives, every worker's call to that service is refused with the
remaining time (reason ``upstream_429``).

Failure policy: if Redis is unreachable the limiter FAILS OPEN (logs
``executions.ratelimit_storage_failed`` at ERROR and lets the call through);
the design requires runs to survive the loss of Redis, and the breaker still
protects the remote side.

Embedded mode (``REDIS_URL`` empty): an in-process limiter with the same
algorithm replaces Redis. It is exact for one process (the embedded worker)
but NOT shared between processes - fine for embedded mode, which has a
single process by definition.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings

log = logging.getLogger("executions.resilience")

Reason = Literal["rate_limited", "upstream_429"]
PREFIX = "zyra:rl:"

# KEYS[1] = TAT key, KEYS[2] = upstream-block key; ARGV[1] = interval (us), ARGV[2] = burst.
# Returns {0, 0} allowed, {1, wait_us} rate limited, {2, wait_us} blocked by an upstream 429.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local blocked = redis.call('PTTL', KEYS[2])
if blocked > 0 then return {2, blocked * 1000} end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then return {1, allow_at - now} end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {0, 0}
"""

# KEYS[1] = upstream-block key; ARGV[1] = ms. Only ever extends an existing block.
_BLOCK = """
local ttl = redis.call('PTTL', KEYS[1])
local ms = tonumber(ARGV[1])
if ttl < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return ms
"""


@dataclass(frozen=True)
class RateLimit:
    rate_per_s: float  # sustained calls per second (<= 0: unlimited)
    burst: int  # calls allowed back to back before the rate applies (>= 1)

    @classmethod
    def from_settings(cls, rate_per_s: float | None = None, burst: int | None = None) -> RateLimit:
        rate = float(settings.ZYRA_RATE_LIMIT_PER_S if rate_per_s is None else rate_per_s)
        b = int(settings.ZYRA_RATE_LIMIT_BURST if burst is None else burst)
        return cls(rate_per_s=rate, burst=max(1, b))

    @property
    def unlimited(self) -> bool:
        return self.rate_per_s <= 0


class RateLimited(Exception):
    def __init__(self, key: str, wait_s: float, reason: Reason) -> None:
        super().__init__(f"{key}: {reason}, retry in {wait_s:.3f}s")
        self.key = key
        self.wait_s = wait_s
        self.reason = reason


_redis_clients: dict[tuple[int, str], Any] = {}
_redis_lock = threading.Lock()


def _redis() -> Any | None:
    url = getattr(settings, "REDIS_URL", "") or ""
    if not url:
        return None
    key = (os.getpid(), url)
    client = _redis_clients.get(key)
    if client is None:
        import redis

        with _redis_lock:
            client = _redis_clients.get(key)
            if client is None:
                client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
                client._zyra_acquire = client.register_script(_ACQUIRE)  # type: ignore[attr-defined]
                client._zyra_block = client.register_script(_BLOCK)  # type: ignore[attr-defined]
                _redis_clients[key] = client
    return client


class _LocalState:
    """The embedded-mode fallback (one process): same GCRA, a lock instead of Lua."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tat: dict[str, float] = {}
        self.blocked_until: dict[str, float] = {}


_local = _LocalState()


def _storage_failed(op: str, key: str, exc: BaseException) -> None:
    log.error(
        "executions.ratelimit_storage_failed",
        extra={"op": op, "service": key, "error": f"{type(exc).__name__}: {exc}", "policy": "fail_open"},
    )


class RateLimiter:
    """Configuration only; the schedule lives in Redis (or, embedded, in this process)."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit

    def acquire(self, key: str) -> None:
        """Take one slot for ``key`` now, or raise RateLimited with the exact wait."""
        client = _redis()
        if client is None:
            self._acquire_local(key)
            return
        # Headroom: the slot is granted here, but the request reaches the service a little later,
        # by a delay that varies between calls. Spacing grants ZYRA_RATE_LIMIT_HEADROOM wider than
        # 1/rate keeps the rate the *service* sees within the limit despite that jitter.
        spacing = 1_000_000 * (1.0 + settings.ZYRA_RATE_LIMIT_HEADROOM) / self.limit.rate_per_s if not self.limit.unlimited else 0
        interval_us = 0 if self.limit.unlimited else max(1, round(spacing))
        try:
            if interval_us == 0:
                # Unlimited: only an upstream block can stop the call.
                ttl = client.pttl(PREFIX + "block:" + key)
                if ttl and ttl > 0:
                    raise RateLimited(key, ttl / 1000.0, "upstream_429")
                return
            code, wait_us = client._zyra_acquire(keys=[PREFIX + key, PREFIX + "block:" + key], args=[interval_us, self.limit.burst])
        except RateLimited:
            raise
        except Exception as exc:  # noqa: BLE001 - any Redis/network failure: fail open (module docstring)
            import redis

            if not isinstance(exc, (redis.RedisError, OSError)):
                raise
            _storage_failed("acquire", key, exc)
            return
        if int(code) == 0:
            return
        raise RateLimited(key, int(wait_us) / 1_000_000.0, "upstream_429" if int(code) == 2 else "rate_limited")

    def _acquire_local(self, key: str) -> None:
        now = time.time()
        with _local.lock:
            blocked = _local.blocked_until.get(key, 0.0)
            if blocked > now:
                raise RateLimited(key, blocked - now, "upstream_429")
            if self.limit.unlimited:
                return
            interval = (1.0 + settings.ZYRA_RATE_LIMIT_HEADROOM) / self.limit.rate_per_s
            tat = max(_local.tat.get(key, 0.0), now)
            allow_at = tat + interval - self.limit.burst * interval
            if allow_at > now:
                raise RateLimited(key, allow_at - now, "rate_limited")
            _local.tat[key] = tat + interval


def upstream_block(*, key: str, seconds: float) -> float:
    """Refuse every worker's calls to ``key`` for ``seconds`` (an upstream Retry-After). Returns the seconds applied."""
    seconds = min(max(0.0, seconds), float(settings.ZYRA_RETRY_AFTER_MAX_S))
    ms = math.ceil(seconds * 1000)
    if ms <= 0:
        return 0.0
    client = _redis()
    if client is None:
        with _local.lock:
            _local.blocked_until[key] = max(_local.blocked_until.get(key, 0.0), time.time() + ms / 1000.0)
    else:
        try:
            client._zyra_block(keys=[PREFIX + "block:" + key], args=[ms])
        except Exception as exc:  # noqa: BLE001 - fail open, as for acquire
            import redis

            if not isinstance(exc, (redis.RedisError, OSError)):
                raise
            _storage_failed("block", key, exc)
            return 0.0
    log.warning("executions.upstream_429_block", extra={"service": key, "seconds": ms / 1000.0})
    return ms / 1000.0
