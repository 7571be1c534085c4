"""WEBHOOK: a trigger root fired by ``POST /hooks/{token}/``; emits the payload."""

from __future__ import annotations

from typing import Any

from workflows.node_types.condition import SCHEMA_DIALECT
from workflows.registry import NodeTypeSpec, RetryPolicy, node_types

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

SPEC = node_types.register(
    NodeTypeSpec(
        type="WEBHOOK",
        category="trigger",
        label="Webhook trigger",
        description="Start a run when a signed request arrives; emits the request payload.",
        config_schema=CONFIG_SCHEMA,
        output_schema={"$schema": SCHEMA_DIALECT},
        timeout_s=10.0,
        retry=RetryPolicy(max_attempts=1),
        queue="cpu",
        is_trigger=True,
    )
)
