"""SWITCH: routes to the handle of the first matching case (or the default).

Edges leave a SWITCH with ``sourceHandle`` equal to a case's ``handle`` or to
``default_handle`` (``"default"`` unless set); ``error`` is reserved for the
error branch.
"""

from __future__ import annotations

from typing import Any

from workflows.node_types.condition import (
    DATA_TYPE_SCHEMA,
    OPERATOR_SCHEMA,
    SCHEMA_DIALECT,
)
from workflows.registry import NodeTypeSpec, RetryPolicy, node_types

HANDLE_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 100,
    "not": {"const": "error"},
}

CASE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": ["string", "integer"]},
        "label": {"type": "string"},
        "handle": HANDLE_SCHEMA,
        # Shorthand: the switch value equals this.
        "equals": {},
        # Comparator form: <switch value> <operator> <value>.
        "operator": OPERATOR_SCHEMA,
        "value": {},
        "dataType": DATA_TYPE_SCHEMA,
        "caseSensitive": {"type": "boolean"},
    },
    "required": ["handle"],
    "additionalProperties": False,
    "anyOf": [{"required": ["equals"]}, {"required": ["operator"]}],
}

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "title": "SWITCH config",
    "type": "object",
    "properties": {
        "value": {"description": "The value the cases test (usually a template); defaults to the node's input."},
        "cases": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": CASE_SCHEMA,
        },
        "default_handle": HANDLE_SCHEMA,
    },
    "required": ["cases"],
    "additionalProperties": False,
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "type": "object",
    "properties": {
        "handle": {"type": "string"},
        "value": {},
        "case_index": {"type": ["integer", "null"]},
    },
    "required": ["handle"],
}

SPEC = node_types.register(
    NodeTypeSpec(
        type="SWITCH",
        category="logic",
        label="Switch",
        description="Route to the first case whose test matches the value, else to the default handle.",
        config_schema=CONFIG_SCHEMA,
        output_schema=OUTPUT_SCHEMA,
        timeout_s=10.0,
        retry=RetryPolicy(max_attempts=1),
        queue="cpu",
        instant=True,
        handles=None,
    )
)
