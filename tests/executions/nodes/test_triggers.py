"""MANUAL, WEBHOOK and SCHEDULE handlers: trigger roots emit the run input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.executions.nodes.conftest import node_error, run_node
from workflows.node_types.schedule import next_fire_time, schedule_config_errors


@pytest.mark.parametrize("node_type", ["MANUAL", "WEBHOOK", "SCHEDULE"])
def test_trigger_emits_the_run_input(node_type: str) -> None:
    payload = {"order_id": 42, "items": [1, 2]}
    assert run_node(node_type, {}, run_input=payload) == payload


@pytest.mark.parametrize("node_type", ["MANUAL", "WEBHOOK"])
def test_input_schema_is_enforced(node_type: str) -> None:
    config = {"input_schema": {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "integer"}}}}
    assert run_node(node_type, config, run_input={"order_id": 1}) == {"order_id": 1}
    err = node_error(node_type, config, run_input={"order_id": "x"})
    assert err.code == "validation"
    assert err.details[0]["path"] == "/order_id"
    err = node_error(node_type, config, run_input={})
    assert err.code == "validation" and "order_id" in err.message


def test_broken_input_schema_is_a_config_error() -> None:
    assert node_error("MANUAL", {"input_schema": {"type": "nonsense"}}).code == "config"
    assert node_error("MANUAL", {"input_schema": "string"}).code == "config"


def test_schedule_accepts_cron_interval_and_timezone() -> None:
    config = {"cron": "*/5 * * * *", "timezone": "Europe/Paris"}
    assert run_node("SCHEDULE", config, run_input={"tick": 1}) == {"tick": 1}
    assert run_node("SCHEDULE", {"interval_s": 60}, run_input={}) == {}


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ({"cron": "not a cron"}, "invalid_cron"),
        ({"cron": "61 * * * *"}, "invalid_cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "invalid_timezone"),
        ({"timezone": "../../etc/passwd"}, "invalid_timezone"),
        ({"timezone": 5}, "invalid_timezone"),
    ],
)
def test_schedule_rejects_bad_cron_and_timezone(config: dict[str, object], code: str) -> None:
    err = node_error("SCHEDULE", config)
    assert err.code == "config"
    assert err.details[0]["code"] == code
    assert schedule_config_errors(config)[0][1] == code


def test_next_fire_time() -> None:
    after = datetime(2026, 11, 25, 20, 1, 30, tzinfo=UTC)
    assert next_fire_time({"cron": "*/5 * * * *"}, after) == datetime(2026, 11, 25, 20, 5, tzinfo=UTC)
    # 09:00 in Paris is 08:00 UTC in November.
    paris = next_fire_time({"cron": "0 9 * * *", "timezone": "Europe/Paris"}, after)
    assert paris is not None and paris.astimezone(UTC) == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    assert next_fire_time({"interval_s": 90}, after) == datetime(2026, 11, 25, 20, 3, 0, tzinfo=UTC)
    assert next_fire_time({}, after) is None
