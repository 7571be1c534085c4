"""DELAY: waits without holding a worker (the handler defers; the sweeper wakes it).

Its output is its input, unchanged, so successors see the data as if the
delay were not there.
"""

from __future__ import annotations

from typing import Any

from workflows.node_types.condition import SCHEMA_DIALECT
from workflows.registry import NodeTypeSpec, RetryPolicy, node_types

MAX_DELAY_S = 30 * 24 * 3600  # 30 days
UNITS: dict[str, float] = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "title": "DELAY config",
    "type": "object",
    "properties": {
        "seconds": {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_DELAY_S},
                {"type": "string"},
            ]
        },
        "until": {
            "type": "string",
            "maxLength": 64,
            "description": "ISO 8601 datetime (UTC if no offset).",
        },
        # The builder's form: an amount and a unit.
        "duration": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]},
        "unit": {"enum": list(UNITS)},
    },
    "additionalProperties": False,
    "oneOf": [
        {"required": ["seconds"]},
        {"required": ["until"]},
        {"required": ["duration"]},
    ],
}

SPEC = node_types.register(
    NodeTypeSpec(
        type="DELAY",
        category="logic",
        label="Delay",
        description="Wait a number of seconds or until a time, without occupying a worker; passes its input on.",
        config_schema=CONFIG_SCHEMA,
        output_schema={"$schema": SCHEMA_DIALECT},
        timeout_s=10.0,
        retry=RetryPolicy(max_attempts=1),
        queue="io",
        instant=True,
    )
)
