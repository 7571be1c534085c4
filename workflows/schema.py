"""The JSON Schema of a whole workflow definition, built from the node-type registry.

Served by ``GET /api/workflows/schema/`` so the builder validates with the same
config schemas the engine uses. Each node type's config schema is embedded as
its own schema resource (``$id``), so ``$ref``s inside it keep resolving, and
is selected by an if/then on the node's type (``type``, or ``data.blockType``
when ``type`` is a wrapper such as ``custom``).

The served schema checks shapes; ``workflows.validation`` is authoritative and
adds the graph rules a JSON Schema cannot express (ids, edges, cycles,
templates).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from workflows.definition import WRAPPER_TYPES
from workflows.registry import NodeTypeSpec, node_types
from workflows.validation import MAX_PARALLEL_NODES, MAX_RETRY_ATTEMPTS, ON_ERROR_VALUES

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:zyra:workflow-definition"


def config_schema_id(type_name: str) -> str:
    return f"urn:zyra:node-type:{type_name}:config"


def type_name_pattern(type_name: str) -> str:
    """An ECMA-262 regex matching every spelling ``canonical_type_name`` accepts:
    any letter case, ``-`` or space for ``_``, surrounding blanks (JSON Schema
    regexes have no case-insensitive flag)."""
    parts = []
    for ch in type_name:
        if ch == "_":
            parts.append(r"[_\- ]")
        elif ch.isalpha():
            parts.append(f"[{ch.upper()}{ch.lower()}]")
        else:
            parts.append(re.escape(ch))
    return r"^\s*" + "".join(parts) + r"\s*$"


def _name_schema(specs: list[NodeTypeSpec]) -> dict[str, Any]:
    return {"type": "string", "anyOf": [{"pattern": type_name_pattern(s.type)} for s in specs]}


def _embedded(spec: NodeTypeSpec) -> dict[str, Any]:
    schema = copy.deepcopy(spec.config_schema) if spec.config_schema else {"type": "object"}
    if isinstance(schema, dict):
        schema.setdefault("$id", config_schema_id(spec.type))
        schema.pop("$schema", None)  # one dialect for the whole document
    return schema


def _is_type(spec: NodeTypeSpec) -> dict[str, Any]:
    names = {"type": "string", "pattern": type_name_pattern(spec.type)}
    return {
        "anyOf": [
            {"required": ["type"], "properties": {"type": {**names, "not": {"enum": sorted(WRAPPER_TYPES)}}}},
            {
                "required": ["type", "data"],
                "properties": {
                    "type": {"enum": sorted(WRAPPER_TYPES)},
                    "data": {"required": ["blockType"], "properties": {"blockType": names}},
                },
            },
        ]
    }


def definition_schema(*, max_nodes: int | None = None, timeout_cap_s: float | None = None) -> dict[str, Any]:
    """The definition schema for the node types registered now."""
    from django.conf import settings

    if max_nodes is None:
        max_nodes = int(settings.ZYRA_MAX_NODES)
    if timeout_cap_s is None:
        timeout_cap_s = float(settings.ZYRA_MAX_NODE_TIMEOUT_S)
    specs = node_types.all()
    known = _name_schema(specs)
    configs = {s.type: _embedded(s) for s in specs}
    per_type = [
        {
            "if": _is_type(s),
            "then": {"properties": {"data": {"properties": {"config": {"$ref": config_schema_id(s.type)}}}}},
        }
        for s in specs
    ]
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "Zyra workflow definition",
        "description": "A React Flow document plus settings. Node types and their config schemas come from GET /api/node-types/.",
        "type": "object",
        "required": ["nodes"],
        "properties": {
            "nodes": {"type": "array", "minItems": 1, "maxItems": max_nodes, "items": {"$ref": "#/$defs/node"}},
            "edges": {"type": "array", "items": {"$ref": "#/$defs/edge"}},
            "settings": {"$ref": "#/$defs/settings"},
        },
        "$defs": {
            "node": {
                "type": "object",
                "required": ["id"],
                "properties": {
                    "id": {"type": "string", "minLength": 1, "maxLength": 200},
                    "type": {
                        "type": "string",
                        "description": "The block type, or a wrapper (custom, default) with the block type in data.blockType.",
                    },
                    "position": {"type": "object"},
                    "data": {"$ref": "#/$defs/nodeData"},
                },
                "anyOf": [
                    {"required": ["type"], "properties": {"type": known}},
                    {
                        "properties": {
                            "type": {"enum": sorted(WRAPPER_TYPES)},
                            "data": {"required": ["blockType"], "properties": {"blockType": known}},
                        },
                        "required": ["data"],
                    },
                ],
                "allOf": per_type,
            },
            "nodeData": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "blockType": {"type": "string"},
                    "config": {"type": "object"},
                    "isEnabled": {"type": "boolean"},
                    "retry": {"$ref": "#/$defs/retry"},
                    "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": timeout_cap_s},
                    "on_error": {"enum": list(ON_ERROR_VALUES)},
                    "output_schema": {
                        "type": ["object", "boolean"],
                        "description": "A JSON Schema (2020-12) the node's output must match.",
                    },
                },
            },
            "retry": {
                "type": "object",
                "properties": {
                    "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_RETRY_ATTEMPTS},
                    "backoff_s": {"type": "number", "minimum": 0},
                    "max_backoff_s": {"type": "number", "minimum": 0},
                    "multiplier": {"type": "number", "minimum": 0},
                    "jitter": {"type": "number", "minimum": 0},
                },
            },
            "edge": {
                "type": "object",
                "required": ["source", "target"],
                "properties": {
                    "id": {"type": "string"},
                    "source": {"type": "string", "minLength": 1},
                    "target": {"type": "string", "minLength": 1},
                    "sourceHandle": {
                        "type": ["string", "null"],
                        "description": "CONDITION: true|false; SWITCH: a case or default; error: the error branch.",
                    },
                    "targetHandle": {"type": ["string", "null"]},
                    "data": {"type": "object", "properties": {"condition": {"type": "string"}}},
                },
            },
            "settings": {
                "type": "object",
                "properties": {
                    "timeout_s": {"type": "number", "exclusiveMinimum": 0},
                    "max_parallel_nodes": {"type": "integer", "minimum": 1, "maximum": MAX_PARALLEL_NODES},
                    "sequential": {"type": "boolean"},
                },
            },
            **{f"config_{name}": schema for name, schema in configs.items()},
        },
    }


def node_type_registry() -> list[dict[str, Any]]:
    """Every registered node type with its schemas and defaults (GET /api/node-types/)."""
    return [spec.as_dict() for spec in node_types.all()]
