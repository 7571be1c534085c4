"""Normalisation of the builder's forms into the canonical definition. Pure: no database."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.workflows.conftest import BUILDER_DOCUMENTS, load_fixture
from workflows.definition import checksum, node_block_type, normalize


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"id": "a", "type": "HTTP_REQUEST"}, "HTTP_REQUEST"),
        ({"id": "a", "type": "http_request"}, "HTTP_REQUEST"),
        ({"id": "a", "type": "http-request"}, "HTTP_REQUEST"),
        ({"id": "a", "type": "custom", "data": {"blockType": "EMAIL"}}, "EMAIL"),
        ({"id": "a", "type": "default", "data": {"blockType": "email"}}, "EMAIL"),
        ({"id": "a", "type": "CUSTOM", "data": {"blockType": "Condition"}}, "CONDITION"),
        ({"id": "a", "data": {"blockType": "DELAY"}}, "DELAY"),
        ({"id": "a", "type": "custom", "data": {}}, None),
        ({"id": "a", "type": 5}, None),
        ("not a node", None),
    ],
)
def test_node_block_type(node: Any, expected: str | None) -> None:
    assert node_block_type(node) == expected


@pytest.mark.parametrize("name", BUILDER_DOCUMENTS)
def test_normalize_is_idempotent_and_does_not_touch_the_input(name: str) -> None:
    submitted = load_fixture(name)
    before = copy.deepcopy(submitted)
    once = normalize(submitted)
    assert submitted == before
    assert normalize(once) == once


def test_canonical_form_of_the_health_monitor() -> None:
    submitted = load_fixture("health_monitor")
    canonical = normalize(submitted)
    for raw, node in zip(submitted["nodes"], canonical["nodes"]):
        assert node["type"] == raw["data"]["blockType"].upper()
        assert node["data"]["blockType"] == node["type"]
        # every other field untouched, UI-only ones included
        assert {k: v for k, v in node.items() if k not in {"type", "data"}} == {k: v for k, v in raw.items() if k not in {"type", "data"}}
        assert {k: v for k, v in node["data"].items() if k != "blockType"} == {k: v for k, v in raw["data"].items() if k != "blockType"}
    assert [e["id"] for e in canonical["edges"]] == [e["id"] for e in submitted["edges"]]
    assert canonical["viewport"] == submitted["viewport"]
    assert canonical["settings"] == {}


def test_edges_get_ids_and_empty_handles_are_dropped() -> None:
    canonical = normalize(
        {
            "nodes": [{"id": "a", "type": "MANUAL"}, {"id": "b", "type": "DELAY"}],
            "edges": [
                {"source": "a", "target": "b", "sourceHandle": None, "targetHandle": ""},
                {"source": "a", "target": "b"},
            ],
        }
    )
    ids = [e["id"] for e in canonical["edges"]]
    assert all(ids) and len(set(ids)) == 2
    assert "sourceHandle" not in canonical["edges"][0] and "targetHandle" not in canonical["edges"][0]
    assert canonical["nodes"][0]["data"] == {"config": {}}


def test_checksum_ignores_key_order_but_not_content() -> None:
    a = normalize(load_fixture("approval_flow"))
    reordered = json.loads(json.dumps(a, sort_keys=True))
    assert checksum(a) == checksum(reordered)
    changed = copy.deepcopy(a)
    changed["nodes"][0]["position"]["x"] += 1
    assert checksum(changed) != checksum(a)


@pytest.mark.parametrize("garbage", [None, [], "x", {"nodes": "x", "edges": 5}, {"nodes": [1, None, "n"], "edges": [[], "e"]}])
def test_normalize_tolerates_malformed_documents(garbage: Any) -> None:
    out = normalize(garbage)
    assert isinstance(out, dict) and isinstance(out["nodes"], list) and isinstance(out["edges"], list)
