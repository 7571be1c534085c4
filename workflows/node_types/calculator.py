"""CALCULATOR: safe arithmetic (an ``ast`` allow-list, never eval) or a named operation."""

from __future__ import annotations

from typing import Any

from workflows.node_types.condition import SCHEMA_DIALECT
from workflows.registry import NodeTypeSpec, RetryPolicy, node_types

OPERATIONS: tuple[str, ...] = (
    "add",
    "subtract",
    "multiply",
    "divide",
    "power",
    "modulo",
    "fibonacci",
)
MAX_EXPRESSION_LEN = 2000

_NUMBER_OR_TEMPLATE = {"type": ["number", "string"]}

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "title": "CALCULATOR config",
    "type": "object",
    "properties": {
        "expression": {
            "description": "Arithmetic over numbers and variables, e.g. (a + b) * 2 or sqrt(x). "
            "A whole-string template arrives already evaluated.",
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": MAX_EXPRESSION_LEN},
                {"type": "number"},
            ],
        },
        "variables": {
            "type": "object",
            "maxProperties": 100,
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"},
        },
        "operation": {"enum": list(OPERATIONS)},
        "a": _NUMBER_OR_TEMPLATE,
        "b": _NUMBER_OR_TEMPLATE,
        "n": {"type": ["integer", "string"]},
        "precision": {"type": "integer", "minimum": 0, "maximum": 15},
    },
    "additionalProperties": False,
    "anyOf": [{"required": ["expression"]}, {"required": ["operation"]}],
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "type": "object",
    "properties": {"result": {"type": ["number", "boolean"]}},
    "required": ["result"],
}

SPEC = node_types.register(
    NodeTypeSpec(
        type="CALCULATOR",
        category="action",
        label="Calculator",
        description="Evaluate an arithmetic expression safely, or add/subtract/multiply/divide/power/modulo/fibonacci.",
        config_schema=CONFIG_SCHEMA,
        output_schema=OUTPUT_SCHEMA,
        timeout_s=10.0,
        retry=RetryPolicy(max_attempts=1),
        queue="cpu",
        instant=True,
    )
)
