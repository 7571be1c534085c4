"""MANUAL: a trigger root started from the API or the admin; emits the run input."""

from __future__ import annotations

from typing import Any

from workflows.node_types._trigger import register_trigger
from workflows.node_types.condition import SCHEMA_DIALECT

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "title": "MANUAL config",
    "type": "object",
    "properties": {
        "input_schema": {
            "type": "object",
            "description": "A JSON Schema the run inputs must match (checked when a run starts).",
        },
        "sample_input": {"description": "Example inputs the builder offers when starting a run."},
        "description": {"type": "string", "maxLength": 10000},
    },
    # Trigger configs stay open: the builder stores UI state beside them.
    "additionalProperties": True,
}

SPEC = register_trigger(
    type_name="MANUAL",
    label="Manual trigger",
    description="Start a run by hand (API or admin); emits the run inputs.",
    config_schema=CONFIG_SCHEMA,
)
