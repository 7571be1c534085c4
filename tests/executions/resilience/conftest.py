"""Resilience tests: the breaker's write-behind thread must not keep a DB connection past a test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from executions.resilience.breaker import breaker_writer_close


@pytest.fixture(autouse=True)
def _close_breaker_writer() -> Iterator[None]:
    yield
    assert breaker_writer_close(10)
