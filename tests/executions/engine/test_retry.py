"""Retry arithmetic: classification, policy parsing, exponential backoff with jitter and cap."""

from __future__ import annotations

import random

import pytest

from executions.engine.retry import NOT_RETRYABLE, RETRYABLE, Policy, backoff_delay, is_retryable, should_retry

DEFAULT = Policy(max_attempts=3, backoff_s=1.0, max_backoff_s=60.0, multiplier=2.0, jitter=0.2)


def test_error_classes_of_the_design() -> None:
    for code in ("timeout", "connection", "http_5xx", "http_429", "rate_limited", "circuit_open"):
        assert is_retryable(code)
    for code in ("validation", "config", "auth", "http_4xx", "template"):
        assert not is_retryable(code)
    assert not is_retryable("something_new")  # unknown codes are not retried
    assert not RETRYABLE & NOT_RETRYABLE


def test_should_retry_counts_attempts() -> None:
    assert should_retry(DEFAULT, 1, "timeout")
    assert should_retry(DEFAULT, 2, "http_5xx")
    assert not should_retry(DEFAULT, 3, "timeout")  # 3 attempts in all
    assert not should_retry(DEFAULT, 1, "http_4xx")


def test_backoff_grows_exponentially_and_is_capped() -> None:
    p = Policy(max_attempts=10, backoff_s=1.0, max_backoff_s=10.0, multiplier=2.0, jitter=0.0)
    assert [backoff_delay(p, n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_delay(p, 0) == 1.0


def test_jitter_stays_within_its_fraction_and_the_cap() -> None:
    p = Policy(max_attempts=10, backoff_s=4.0, max_backoff_s=5.0, multiplier=2.0, jitter=0.25)
    rng = random.Random(7)
    first = [backoff_delay(p, 1, rng) for _ in range(500)]
    assert all(3.0 <= d <= 5.0 for d in first)
    assert len({round(d, 6) for d in first}) > 100  # it really varies
    capped = [backoff_delay(p, 5, rng) for _ in range(200)]
    assert all(3.75 <= d <= 5.0 for d in capped)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    p = Policy(max_attempts=10**6, backoff_s=1.0, max_backoff_s=30.0, multiplier=3.0, jitter=0.0)
    assert backoff_delay(p, 100_000) == 30.0


def test_policy_from_dict_merges_and_clamps() -> None:
    assert Policy.from_dict({}, DEFAULT) == DEFAULT
    p = Policy.from_dict({"max_attempts": 5, "backoff_s": 0.5, "max_backoff_s": 9, "multiplier": 3, "jitter": 0.1}, DEFAULT)
    assert p == Policy(5, 0.5, 9.0, 3.0, 0.1)
    clamped = Policy.from_dict({"max_attempts": 0, "backoff_s": -1, "multiplier": 0.5, "jitter": 7}, DEFAULT)
    assert (clamped.max_attempts, clamped.backoff_s, clamped.multiplier, clamped.jitter) == (1, 0.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "hostile",
    [
        {"max_attempts": float("inf")},
        {"max_attempts": float("nan"), "backoff_s": float("nan")},
        {"max_attempts": 10**400},
        {"max_attempts": "3", "backoff_s": None, "jitter": [1]},
        {"max_attempts": True},
    ],
)
def test_policy_from_dict_ignores_hostile_values(hostile: dict[str, object]) -> None:
    p = Policy.from_dict(hostile, DEFAULT)
    assert p.max_attempts == DEFAULT.max_attempts
    assert p.backoff_s == DEFAULT.backoff_s
    assert 0 <= backoff_delay(p, 2) <= p.max_backoff_s
