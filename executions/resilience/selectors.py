"""Reads of breaker state for the API and the admin."""

from __future__ import annotations

import time
from typing import Any

from django.db.models import QuerySet

from executions.models import CircuitBreaker


def circuit_list() -> QuerySet[CircuitBreaker]:
    return CircuitBreaker.objects.order_by("key")


def circuit_window_counts(breaker: CircuitBreaker, *, window_s: int) -> dict[str, Any]:
    """Calls / failures / slow calls currently inside the rolling window."""
    horizon = int(time.time()) - window_s
    buckets = [b for b in (breaker.window or []) if isinstance(b, list) and len(b) == 4 and b[0] > horizon]
    calls = sum(int(b[1]) for b in buckets)
    failures = sum(int(b[2]) for b in buckets)
    return {
        "calls": calls,
        "failures": failures,
        "slow": sum(int(b[3]) for b in buckets),
        "failure_rate": round(failures / calls, 4) if calls else None,
    }
