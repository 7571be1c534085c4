"""Retry arithmetic: exponential backoff with jitter, capped."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

RETRYABLE = frozenset({"timeout", "connection", "http_5xx", "http_429", "rate_limited", "circuit_open", "worker_lost"})
NOT_RETRYABLE = frozenset({"validation", "config", "auth", "http_4xx", "template", "output_schema", "output_too_large"})
# Outbound-call codes (executions.resilience): refusing or oversized answers do not change on retry.
NOT_RETRYABLE = NOT_RETRYABLE | {"ssrf_blocked", "response_too_large", "too_many_redirects"}


@dataclass(frozen=True)
class Policy:
    max_attempts: int
    backoff_s: float
    max_backoff_s: float
    multiplier: float = 2.0
    jitter: float = 0.2

    @classmethod
    def from_dict(cls, data: dict[str, Any], default: Policy) -> Policy:
        def num(key: str, fallback: float) -> float:
            value = data.get(key, fallback)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return fallback
            try:
                number = float(value)
            except OverflowError:  # an int beyond float range
                return fallback
            # NaN/inf would poison the arithmetic (int(inf) raises): treat as absent.
            return number if math.isfinite(number) else fallback

        return cls(
            max_attempts=max(1, int(num("max_attempts", default.max_attempts))),
            backoff_s=max(0.0, num("backoff_s", default.backoff_s)),
            max_backoff_s=max(0.0, num("max_backoff_s", default.max_backoff_s)),
            multiplier=max(1.0, num("multiplier", default.multiplier)),
            jitter=min(1.0, max(0.0, num("jitter", default.jitter))),
        )


def is_retryable(code: str) -> bool:
    return code in RETRYABLE


def backoff_delay(policy: Policy, failed_attempt: int, rng: random.Random | None = None) -> float:
    """Delay before the attempt after ``failed_attempt`` (1-based)."""
    exponent = max(0, failed_attempt - 1)
    try:
        base = policy.backoff_s * (policy.multiplier**exponent)
    except OverflowError:  # a long retry budget: the cap applies anyway
        base = policy.max_backoff_s
    base = min(base, policy.max_backoff_s)
    if policy.jitter and base > 0:
        r = (rng or random).uniform(-policy.jitter, policy.jitter)
        base = base * (1.0 + r)
    return max(0.0, min(base, policy.max_backoff_s))


def should_retry(policy: Policy, attempt: int, code: str) -> bool:
    return is_retryable(code) and attempt < policy.max_attempts
