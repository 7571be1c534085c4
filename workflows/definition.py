"""Normalisation of builder documents into the one canonical definition form.

Pure: no Django. The builder sends React Flow documents in two dialects:
the block type in ``node.type`` (``HTTP_REQUEST`` or ``http_request``), or
``node.type`` in {custom, default, CUSTOM} with the block type in
``data.blockType``. The canonical form carries the UPPER_SNAKE type in
``type``, keeps every other field untouched (UI-only fields included), and
gives every edge an id.

Canonical node: {"id", "type", "data": {"config": {...}, ...}, ...UI fields}
Canonical edge: {"id", "source", "target", "sourceHandle"?, "targetHandle"?, "data"?}
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

WRAPPER_TYPES = {"custom", "default", "CUSTOM", "Custom", "DEFAULT", "Default", "input", "output"}


def canonical_type_name(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().replace("-", "_").replace(" ", "_").upper()


def node_block_type(node: Any) -> str | None:
    """The canonical block type of a submitted node, or None if it has none."""
    if not isinstance(node, dict):
        return None
    raw = node.get("type")
    data = node.get("data") if isinstance(node.get("data"), dict) else {}
    if raw is None or (isinstance(raw, str) and raw in WRAPPER_TYPES):
        block = data.get("blockType") if isinstance(data, dict) else None
        if block is None and isinstance(data, dict):
            block = data.get("type")
        return canonical_type_name(block)
    return canonical_type_name(raw)


def normalize(definition: Any) -> dict[str, Any]:
    """Return the canonical form. Tolerates malformed parts (validation reports them)."""
    if not isinstance(definition, dict):
        return {"nodes": [], "edges": [], "settings": {}}
    out: dict[str, Any] = {}
    for key, value in definition.items():
        if key not in {"nodes", "edges", "settings"}:
            out[key] = copy.deepcopy(value)
    nodes_in = definition.get("nodes")
    nodes: list[Any] = []
    if isinstance(nodes_in, list):
        for node in nodes_in:
            if not isinstance(node, dict):
                nodes.append(copy.deepcopy(node))
                continue
            new = copy.deepcopy(node)
            canonical = node_block_type(node)
            if canonical is not None:
                new["type"] = canonical
            data = new.get("data")
            if data is None:
                data = {}
                new["data"] = data
            if isinstance(data, dict):
                if canonical is not None and "blockType" in data:
                    data["blockType"] = canonical
                if "config" not in data:
                    data["config"] = {}
            nodes.append(new)
    edges_in = definition.get("edges")
    edges: list[Any] = []
    if isinstance(edges_in, list):
        seen: set[str] = set()
        for index, edge in enumerate(edges_in):
            if not isinstance(edge, dict):
                edges.append(copy.deepcopy(edge))
                continue
            new = copy.deepcopy(edge)
            if not isinstance(new.get("id"), str) or not new.get("id"):
                base = f"e-{new.get('source')}-{new.get('sourceHandle') or 'out'}-{new.get('target')}"
                candidate, n = base, index
                while candidate in seen:
                    n += 1
                    candidate = f"{base}-{n}"
                new["id"] = candidate
            seen.add(str(new["id"]))
            for handle_key in ("sourceHandle", "targetHandle"):
                if handle_key in new and new[handle_key] in ("", None):
                    del new[handle_key]
            edges.append(new)
    settings = definition.get("settings")
    out["nodes"] = nodes
    out["edges"] = edges
    out["settings"] = copy.deepcopy(settings) if settings is not None else {}
    return out


def checksum(canonical: dict[str, Any]) -> str:
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
