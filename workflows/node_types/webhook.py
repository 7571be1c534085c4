"""WEBHOOK: a trigger root fired by ``POST /hooks/{token}/``; emits the payload."""

from __future__ import annotations

from typing import Any

from workflows.node_types._trigger import register_trigger
from workflows.node_types.condition import SCHEMA_DIALECT

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "title": "WEBHOOK config",
    "type": "object",
    "properties": {
        "input_schema": {
            "type": "object",
            "description": "A JSON Schema the payload must match.",
        },
        "method": {"enum": ["POST", "PUT", "GET", "post", "put", "get"]},
        "path": {"type": "string", "maxLength": 500},
        "secret_name": {
            "type": "string",
            "maxLength": 200,
            "description": "Name of the secret whose value signs the requests (HMAC).",
        },
        "description": {"type": "string", "maxLength": 10000},
    },
    # Trigger configs stay open: the builder stores UI state beside them.
    "additionalProperties": True,
}

SPEC = register_trigger(
    type_name="WEBHOOK",
    label="Webhook trigger",
    description="Start a run when a signed request arrives; emits the request payload.",
    config_schema=CONFIG_SCHEMA,
)
