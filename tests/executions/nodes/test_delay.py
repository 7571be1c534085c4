"""DELAY handler: defers (never sleeps), resumes from its stored state, passes input on."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from executions.nodes import delay as delay_module
from executions.nodes.base import Defer, handlers
from tests.executions.nodes.conftest import make_ctx, node_error

NOW = datetime(2026, 11, 25, 20, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    current = [NOW]
    monkeypatch.setattr(delay_module, "now", lambda: current[0])
    return current


def run(config: object, **kwargs: object) -> object:
    return handlers.get("DELAY").run(make_ctx("DELAY", config, **kwargs))  # type: ignore[arg-type]


def test_first_run_defers_with_state_and_never_sleeps(clock: list[datetime]) -> None:
    start = time.monotonic()
    with pytest.raises(Defer) as info:
        run({"seconds": 300}, input={"order": 7})
    assert time.monotonic() - start < 0.1
    assert info.value.until == NOW + timedelta(seconds=300)
    assert info.value.reason == "delay"
    assert info.value.state == {"until": (NOW + timedelta(seconds=300)).isoformat()}


def test_woken_on_time_passes_the_input_through(clock: list[datetime]) -> None:
    with pytest.raises(Defer) as info:
        run({"seconds": 5}, input={"order": 7})
    clock[0] = NOW + timedelta(seconds=5)
    assert run({"seconds": 5}, input={"order": 7}, state=info.value.state) == {"order": 7}


def test_woken_early_defers_again_to_the_same_moment(clock: list[datetime]) -> None:
    with pytest.raises(Defer) as first:
        run({"seconds": 60})
    clock[0] = NOW + timedelta(seconds=30)
    with pytest.raises(Defer) as second:
        run({"seconds": 60}, state=first.value.state)
    # The remaining wait is measured from the first start, not restarted.
    assert second.value.until == first.value.until


def test_duration_and_unit(clock: list[datetime]) -> None:
    with pytest.raises(Defer) as info:
        run({"duration": 2, "unit": "minutes"})
    assert info.value.until == NOW + timedelta(minutes=2)
    with pytest.raises(Defer) as info:
        run({"duration": "1.5", "unit": "hours"})
    assert info.value.until == NOW + timedelta(hours=1.5)


def test_until(clock: list[datetime]) -> None:
    with pytest.raises(Defer) as info:
        run({"until": "2026-11-25T21:00:00Z"})
    assert info.value.until == datetime(2026, 11, 25, 21, tzinfo=UTC)
    # Naive means UTC.
    with pytest.raises(Defer) as info:
        run({"until": "2026-11-25T21:30:00"})
    assert info.value.until == datetime(2026, 11, 25, 21, 30, tzinfo=UTC)


def test_zero_and_past_pass_at_once(clock: list[datetime]) -> None:
    assert run({"seconds": 0}, input=[1, 2]) == [1, 2]
    assert run({"until": "2020-01-01T00:00:00Z"}, input="x") == "x"


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"seconds": -1}, "negative"),
        ({"seconds": "soon"}, "not a number"),
        ({"seconds": True}, "boolean"),
        ({"seconds": float("inf")}, "finite"),
        ({"seconds": 10**9}, "at most"),
        ({"duration": 31, "unit": "days"}, "at most"),
        ({"duration": 1, "unit": "weeks"}, "unit"),
        ({"until": "next tuesday"}, "ISO 8601"),
        ({"until": "2099-01-01T00:00:00Z"}, "days away"),
        ({}, "exactly one"),
        ({"seconds": 1, "until": "2026-11-25T21:00:00Z"}, "exactly one"),
        ("5", "object"),
    ],
)
def test_bad_configs(clock: list[datetime], config: object, fragment: str) -> None:
    err = node_error("DELAY", config)
    assert err.code == "validation"
    assert fragment in err.message


def test_corrupt_state_is_a_validation_error(clock: list[datetime]) -> None:
    assert node_error("DELAY", {"seconds": 1}, state={"until": "garbage"}).code == "validation"


def test_real_clock_defers_into_the_future() -> None:
    with pytest.raises(Defer) as info:
        run({"seconds": 2})
    remaining = (info.value.until - datetime.now(UTC)).total_seconds()
    assert 1.0 < remaining <= 2.0
