"""DELAY handler: never sleeps; defers itself and passes its input on when woken.

Config: ``{"seconds": n}``, ``{"duration": n, "unit": "seconds|minutes|hours|days"}``
or ``{"until": "<ISO 8601>"}`` (UTC when no offset). The first run raises
``Defer(until, reason="delay", state={"until": iso})``; the engine parks the
node and runs it again with ``ctx.state`` from that Defer. A run with the
stored ``until`` reached returns the node's input unchanged (so successors see
the data as if the delay were not there); one woken early defers again to the
same moment. A delay of zero, or an ``until`` already past, passes at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from executions.nodes.base import Defer, NodeContext, NodeError, NodeHandler, register
from executions.nodes.condition import guarded, to_datetime, to_number
from workflows.node_types.delay import MAX_DELAY_S, UNITS


def now() -> datetime:
    """The current time (a function, so tests can move the clock)."""
    return datetime.now(UTC)


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise NodeError("validation", f"{name} must be a number of seconds, not a boolean")
    number = float(to_number(value, name))
    if number < 0:
        raise NodeError("validation", f"{name} must not be negative")
    return number


def target_time(config: dict[str, Any], start: datetime) -> datetime:
    """When a delay with this config, started at ``start``, ends."""
    given = [key for key in ("seconds", "duration", "until") if key in config]
    if len(given) != 1:
        raise NodeError(
            "validation",
            "DELAY needs exactly one of seconds, duration (with unit) or until",
        )
    if "until" in config:
        until = to_datetime(config["until"], "until")
        if until - start > timedelta(seconds=MAX_DELAY_S):
            raise NodeError("validation", f"until is more than {MAX_DELAY_S // 86400} days away")
        return until
    if "seconds" in config:
        seconds = _seconds(config["seconds"], "seconds")
    else:
        unit = config.get("unit", "seconds")
        if unit not in UNITS:
            raise NodeError("validation", f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
        seconds = _seconds(config["duration"], "duration") * UNITS[unit]
    if seconds > MAX_DELAY_S:
        raise NodeError(
            "validation",
            f"a delay may last at most {MAX_DELAY_S} seconds ({MAX_DELAY_S // 86400} days)",
        )
    return start + timedelta(seconds=seconds)


@register
class DelayHandler(NodeHandler):
    type = "DELAY"

    @guarded
    def run(self, ctx: NodeContext) -> Any:
        current = now()
        state = ctx.state
        if isinstance(state, dict) and "until" in state:
            until = to_datetime(state["until"], "state.until")
        else:
            if not isinstance(ctx.config, dict):
                raise NodeError("validation", "config must be an object")
            until = target_time(ctx.config, current)
        if current >= until:
            return ctx.input
        raise Defer(until=until, reason="delay", state={"until": until.isoformat()})
