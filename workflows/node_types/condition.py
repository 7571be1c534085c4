"""CONDITION: routes to its ``true`` or ``false`` handle.

Two config forms: an ``expression`` (a template the engine renders before the
handler runs, so a whole-string template arrives as its JSON value), or the
builder's comparator form ``{"conditions": [{leftValue, operator, rightValue,
dataType}], "combinator": "and"|"or"}`` (a single comparator may also sit at
the top level). The schema pieces shared by SWITCH and DATA_TRANSFORM live
here so the three types accept the same operators.
"""

from __future__ import annotations

from typing import Any

from workflows.registry import NodeTypeSpec, RetryPolicy, node_types

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Canonical comparator operators (what the handlers implement).
OPERATORS: tuple[str, ...] = (
    "equals",
    "not_equals",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "regex",
    "is_empty",
    "is_not_empty",
)
# Spellings the builder (and people) use for the same operators.
OPERATOR_ALIASES: dict[str, str] = {
    "==": "equals",
    "=": "equals",
    "eq": "equals",
    "equal": "equals",
    "is": "equals",
    "!=": "not_equals",
    "ne": "not_equals",
    "neq": "not_equals",
    "not_equal": "not_equals",
    "notEquals": "not_equals",
    "notEqual": "not_equals",
    "is_not": "not_equals",
    ">": "gt",
    "greater_than": "gt",
    "greaterThan": "gt",
    ">=": "gte",
    "greater_than_or_equal": "gte",
    "greaterThanOrEqual": "gte",
    "<": "lt",
    "less_than": "lt",
    "lessThan": "lt",
    "<=": "lte",
    "less_than_or_equal": "lte",
    "lessThanOrEqual": "lte",
    "notContains": "not_contains",
    "does_not_contain": "not_contains",
    "startsWith": "starts_with",
    "endsWith": "ends_with",
    "matches": "regex",
    "isEmpty": "is_empty",
    "empty": "is_empty",
    "isNotEmpty": "is_not_empty",
    "not_empty": "is_not_empty",
    "notEmpty": "is_not_empty",
}
DATA_TYPES: tuple[str, ...] = ("string", "number", "boolean", "date")

# A config value that holds a template (rendered at run time, so its type is
# only known then).
TEMPLATE_STRING: dict[str, Any] = {"type": "string", "pattern": r"\{\{[\s\S]*\}\}"}

OPERATOR_SCHEMA: dict[str, Any] = {"enum": [*OPERATORS, *OPERATOR_ALIASES]}
DATA_TYPE_SCHEMA: dict[str, Any] = {"enum": list(DATA_TYPES)}

COMPARATOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # Builder UI keys on each row.
        "id": {"type": ["string", "integer"]},
        "label": {"type": "string"},
        "leftValue": {},
        "operator": OPERATOR_SCHEMA,
        "rightValue": {},
        "dataType": DATA_TYPE_SCHEMA,
        "caseSensitive": {"type": "boolean"},
    },
    "required": ["operator"],
    "additionalProperties": False,
}

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "title": "CONDITION config",
    "type": "object",
    "properties": {
        "expression": {
            "description": "A template such as {{ nodes.fetch.output.status == 200 }}; "
            "its value decides the branch (booleans as is, other values by truthiness).",
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": 10000},
                {"type": ["boolean", "number", "null"]},
            ],
        },
        "conditions": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": COMPARATOR_SCHEMA,
        },
        "combinator": {"enum": ["and", "or", "AND", "OR"]},
        # A single comparator at the top level.
        "leftValue": {},
        "operator": OPERATOR_SCHEMA,
        "rightValue": {},
        "dataType": DATA_TYPE_SCHEMA,
        "caseSensitive": {"type": "boolean"},
    },
    "additionalProperties": False,
    "anyOf": [
        {"required": ["expression"]},
        {"required": ["conditions"]},
        {"required": ["operator"]},
    ],
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "type": "object",
    "properties": {
        "result": {"type": "boolean"},
        "value": {},
        "conditions": {"type": "array"},
        "combinator": {"enum": ["and", "or"]},
    },
    "required": ["result"],
}

SPEC = node_types.register(
    NodeTypeSpec(
        type="CONDITION",
        category="logic",
        label="Condition",
        description="Route to the true or false branch by an expression or comparator rules.",
        config_schema=CONFIG_SCHEMA,
        output_schema=OUTPUT_SCHEMA,
        timeout_s=10.0,
        retry=RetryPolicy(max_attempts=1),
        queue="cpu",
        instant=True,
        handles=("true", "false", "error"),
    )
)
