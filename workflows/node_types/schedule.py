"""SCHEDULE: a trigger root fired by the scheduler; emits the run input.

The schema checks shapes; ``schedule_config_errors`` checks what a schema
cannot (a cron expression croniter accepts, a known IANA time zone) and
``next_fire_time`` computes the next firing, for the scheduler to use.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workflows.node_types._trigger import register_trigger
from workflows.node_types.condition import SCHEMA_DIALECT

MIN_INTERVAL_S = 1
MAX_INTERVAL_S = 366 * 24 * 3600

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "title": "SCHEDULE config",
    "type": "object",
    "properties": {
        "cron": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "description": "5- or 6-field cron expression.",
        },
        "interval_s": {
            "type": "number",
            "minimum": MIN_INTERVAL_S,
            "maximum": MAX_INTERVAL_S,
        },
        "interval": {
            "type": "number",
            "minimum": MIN_INTERVAL_S,
            "maximum": MAX_INTERVAL_S,
            "description": "Alias of interval_s (seconds).",
        },
        "timezone": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "IANA name, default UTC.",
        },
        "enabled": {"type": "boolean"},
        "start_at": {"type": "string", "maxLength": 64},
        "end_at": {"type": "string", "maxLength": 64},
        "input": {"description": "The run input each firing starts with."},
        "description": {"type": "string", "maxLength": 10000},
    },
    # Trigger configs stay open: the builder stores UI state beside them.
    "additionalProperties": True,
    "not": {"required": ["cron", "interval_s"]},
}


def _timezone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name or len(name) > 64 or ".." in name or name.startswith("/"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def schedule_config_errors(config: Any) -> list[tuple[str, str, str]]:
    """(json pointer inside the config, code, message) for what the schema cannot check."""
    errors: list[tuple[str, str, str]] = []
    if not isinstance(config, dict):
        return [("", "invalid_config", "config must be an object")]
    cron = config.get("cron")
    if isinstance(cron, str) and "{{" not in cron:
        from croniter import croniter

        try:
            valid = croniter.is_valid(cron)
        except Exception:  # noqa: BLE001 - croniter raises assorted types on junk; all mean invalid
            valid = False
        if not valid:
            errors.append(("/cron", "invalid_cron", f"{cron!r} is not a valid cron expression"))
    tz = config.get("timezone")
    if tz is not None and not (isinstance(tz, str) and "{{" in tz) and _timezone(tz) is None:
        errors.append(("/timezone", "invalid_timezone", f"{tz!r} is not a known IANA time zone"))
    return errors


def next_fire_time(config: dict[str, Any], after: datetime) -> datetime | None:
    """The first firing strictly after ``after`` (aware), or None when nothing is scheduled."""
    tz = _timezone(config.get("timezone") or "UTC") or ZoneInfo("UTC")
    interval = config.get("interval_s", config.get("interval"))
    cron = config.get("cron")
    if isinstance(cron, str) and cron:
        from croniter import croniter

        base = after.astimezone(tz)
        nxt = croniter(cron, base).get_next(datetime)
        return nxt if nxt.tzinfo else nxt.replace(tzinfo=tz)
    if isinstance(interval, (int, float)) and not isinstance(interval, bool) and interval >= MIN_INTERVAL_S:
        return after + timedelta(seconds=float(interval))
    return None


SPEC = register_trigger(
    type_name="SCHEDULE",
    label="Schedule trigger",
    description="Start runs on a cron expression or a fixed interval, in a time zone.",
    config_schema=CONFIG_SCHEMA,
)
