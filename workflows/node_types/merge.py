"""MERGE: where branches meet; combines the active predecessors' outputs."""

from __future__ import annotations

from typing import Any

from workflows.node_types.condition import SCHEMA_DIALECT
from workflows.registry import NodeTypeSpec, RetryPolicy, node_types

MODES: tuple[str, ...] = ("object", "list", "merge")

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "title": "MERGE config",
    "type": "object",
    "properties": {
        "mode": {
            "enum": list(MODES),
            "description": "object: {node_id: output} (default); list: [outputs] in node-id order; "
            "merge: shallow merge of object outputs (later node ids win).",
        },
    },
    "additionalProperties": False,
}

SPEC = node_types.register(
    NodeTypeSpec(
        type="MERGE",
        category="logic",
        label="Merge",
        description="Join branches: combine the outputs of the predecessors that ran.",
        config_schema=CONFIG_SCHEMA,
        output_schema={"$schema": SCHEMA_DIALECT},
        timeout_s=10.0,
        retry=RetryPolicy(max_attempts=1),
        queue="cpu",
        instant=True,
    )
)
