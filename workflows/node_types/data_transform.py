"""DATA_TRANSFORM: declarative operations over lists and objects (no code execution).

``source`` (default: the node's input) flows through ``operations`` in order;
the output is ``{"result": <final value>}``.
"""

from __future__ import annotations

from typing import Any

from workflows.node_types.condition import (
    DATA_TYPE_SCHEMA,
    OPERATOR_SCHEMA,
    SCHEMA_DIALECT,
)
from workflows.registry import NodeTypeSpec, RetryPolicy, node_types

MAX_OPERATIONS = 100
OPS: tuple[str, ...] = (
    "map",
    "filter",
    "aggregate",
    "format",
    "extract",
    "combine",
    "sort",
    "limit",
    "unique",
)
AGGREGATE_FNS: tuple[str, ...] = (
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "first",
    "last",
    "list",
)

_PATH = {"type": "string", "minLength": 1, "maxLength": 500}
_PATH_OR_EMPTY = {"type": "string", "maxLength": 500}
_INT_OR_TEMPLATE = {"type": ["integer", "string"]}


def _op(name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "if": {"properties": {"op": {"const": name}}, "required": ["op"]},
        "then": {
            "properties": {
                "op": {"const": name},
                "id": {},
                "label": {"type": "string"},
                **properties,
            },
            "required": ["op", *required],
            "additionalProperties": False,
        },
    }


OPERATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"op": {"enum": list(OPS)}},
    "required": ["op"],
    "allOf": [
        _op(
            "map",
            {
                "fields": {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 500,
                    "additionalProperties": _PATH_OR_EMPTY,
                },
                "keep": {"type": "boolean"},
            },
            ["fields"],
        ),
        _op(
            "filter",
            {
                "field": _PATH_OR_EMPTY,
                "operator": OPERATOR_SCHEMA,
                "value": {},
                "dataType": DATA_TYPE_SCHEMA,
                "caseSensitive": {"type": "boolean"},
            },
            ["operator"],
        ),
        _op(
            "aggregate",
            {
                "field": _PATH_OR_EMPTY,
                "fn": {"enum": list(AGGREGATE_FNS)},
                "group_by": _PATH,
            },
            ["fn"],
        ),
        _op(
            "format",
            {"template": {"type": "string", "maxLength": 10000}, "field": _PATH},
            ["template"],
        ),
        _op("extract", {"path": _PATH_OR_EMPTY, "default": {}}, ["path"]),
        _op(
            "combine",
            {
                "mode": {"enum": ["merge", "concat", "zip"]},
                "sources": {"type": ["array", "string"], "maxItems": 100},
            },
            ["mode"],
        ),
        _op("sort", {"field": _PATH_OR_EMPTY, "order": {"enum": ["asc", "desc"]}}, []),
        _op("limit", {"count": _INT_OR_TEMPLATE, "offset": _INT_OR_TEMPLATE}, ["count"]),
        _op("unique", {"field": _PATH_OR_EMPTY}, []),
    ],
}

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "title": "DATA_TRANSFORM config",
    "type": "object",
    "properties": {
        "source": {"description": "The value to transform (usually a template); defaults to the node's input."},
        "operations": {
            "type": "array",
            "maxItems": MAX_OPERATIONS,
            "items": OPERATION_SCHEMA,
        },
    },
    "required": ["operations"],
    "additionalProperties": False,
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "type": "object",
    "properties": {"result": {}},
    "required": ["result"],
}

SPEC = node_types.register(
    NodeTypeSpec(
        type="DATA_TRANSFORM",
        category="action",
        label="Transform data",
        description="Map, filter, aggregate, format, extract, combine, sort, limit or de-duplicate data.",
        config_schema=CONFIG_SCHEMA,
        output_schema=OUTPUT_SCHEMA,
        timeout_s=30.0,
        retry=RetryPolicy(max_attempts=1),
        queue="cpu",
    )
)
