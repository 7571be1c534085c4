"""Shared registration of the trigger node types (MANUAL, WEBHOOK, SCHEDULE)."""

from __future__ import annotations

from typing import Any

from workflows.node_types.condition import SCHEMA_DIALECT
from workflows.registry import NodeTypeSpec, RetryPolicy, node_types


def register_trigger(*, type_name: str, label: str, description: str, config_schema: dict[str, Any]) -> NodeTypeSpec:
    """Triggers emit the run input: quick, never retried, any JSON output."""
    return node_types.register(
        NodeTypeSpec(
            type=type_name,
            category="trigger",
            label=label,
            description=description,
            config_schema=config_schema,
            output_schema={"$schema": SCHEMA_DIALECT},
            timeout_s=10.0,
            retry=RetryPolicy(max_attempts=1),
            queue="cpu",
            is_trigger=True,
            instant=True,
        )
    )
