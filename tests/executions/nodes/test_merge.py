"""MERGE handler: object, list and merge modes over the predecessors' outputs."""

from __future__ import annotations

from tests.executions.nodes.conftest import node_error, run_node

INPUTS = {"b": {"x": 2, "shared": "b"}, "a": {"y": 1, "shared": "a"}}


def test_object_mode_is_the_default() -> None:
    assert run_node("MERGE", {}, inputs_by_node=INPUTS) == INPUTS
    assert run_node("MERGE", {"mode": "object"}, inputs_by_node=INPUTS) == INPUTS


def test_list_mode_orders_by_node_id() -> None:
    assert run_node("MERGE", {"mode": "list"}, inputs_by_node=INPUTS) == [INPUTS["a"], INPUTS["b"]]


def test_merge_mode_later_node_id_wins() -> None:
    out = run_node("MERGE", {"mode": "merge"}, inputs_by_node=INPUTS)
    assert out == {"x": 2, "y": 1, "shared": "b"}


def test_one_branch_skipped_merges_what_ran() -> None:
    assert run_node("MERGE", {"mode": "list"}, inputs_by_node={"true_branch": {"ok": 1}}) == [{"ok": 1}]
    assert run_node("MERGE", {"mode": "merge"}, inputs_by_node={"a": None, "b": {"k": 1}}) == {"k": 1}
    assert run_node("MERGE", {}, inputs_by_node={}) == {}


def test_merge_mode_rejects_non_objects() -> None:
    err = node_error("MERGE", {"mode": "merge"}, inputs_by_node={"a": {"x": 1}, "b": [1, 2]})
    assert err.code == "validation"
    assert "'b'" in err.message


def test_bad_mode() -> None:
    err = node_error("MERGE", {"mode": "zip"}, inputs_by_node=INPUTS)
    assert err.code == "validation" and "mode" in err.message
    assert node_error("MERGE", {"mode": ["list"]}, inputs_by_node=INPUTS).code == "validation"
