"""Per-endpoint request rate limit: GCRA, shared by every web process through Redis.

Stateless: the limiter holds no counters; Redis does (one key per endpoint,
changed atomically by a Lua script). Embedded mode has no Redis and one
process, so an in-process table stands in.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import Any

from django.conf import settings

# KEYS[1] = bucket; ARGV = now, emission interval, burst tolerance (integer
# microseconds: exact in Lua's doubles, and '%.0f' keeps every digit).
# Returns {allowed (0/1), retry_after_us}.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local wait = tat - now - tolerance
if wait > 0 then return {0, math.ceil(wait)} end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, 0}
"""

_local: dict[str, float] = {}
_local_lock = threading.Lock()


@lru_cache(maxsize=4)
def _client(url: str) -> Any:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return client, client.register_script(_GCRA)


def allow(key: str, *, rate_per_s: int) -> tuple[bool, float]:
    """(allowed, retry_after_s). The burst allowed is one second's worth of requests."""
    if rate_per_s <= 0:
        return True, 0.0
    interval_ms = 1000.0 / rate_per_s
    tolerance_ms = 1000.0 - interval_ms
    now_ms = time.time() * 1000.0
    url = getattr(settings, "REDIS_URL", "")
    if url:
        _, script = _client(url)
        allowed, wait_us = script(
            keys=[f"zyra:webhook:rl:{key}"], args=[int(now_ms * 1000), int(interval_ms * 1000), int(tolerance_ms * 1000)]
        )
        return bool(allowed), float(wait_us) / 1_000_000.0
    with _local_lock:
        tat = max(_local.get(key, 0.0), now_ms)
        new_tat = tat + interval_ms
        wait = tat - now_ms - tolerance_ms
        if wait > 0:
            return False, wait / 1000.0
        _local[key] = new_tat
        return True, 0.0
