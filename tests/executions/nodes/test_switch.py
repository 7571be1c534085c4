"""SWITCH handler: first matching case wins, default handle, bad cases."""

from __future__ import annotations

import pytest

from tests.executions.nodes.conftest import node_error, run_node

CASES = [
    {"handle": "small", "operator": "lt", "value": 10, "dataType": "number"},
    {"handle": "exact", "equals": 10},
    {"handle": "big", "operator": "gte", "value": 10},
]


@pytest.mark.parametrize(("value", "handle", "index"), [(3, "small", 0), (10, "exact", 1), ("10", "exact", 1), (99, "big", 2)])
def test_first_matching_case_wins(value: object, handle: str, index: int) -> None:
    out = run_node("SWITCH", {"value": value, "cases": CASES})
    assert out == {"handle": handle, "case_index": index, "value": value}


def test_no_match_goes_to_default_handle() -> None:
    cases = [{"handle": "a", "equals": "x"}, {"handle": "b", "equals": "y"}]
    assert run_node("SWITCH", {"value": "z", "cases": cases})["handle"] == "default"
    out = run_node("SWITCH", {"value": "z", "cases": cases, "default_handle": "other"})
    assert out["handle"] == "other" and out["case_index"] is None


def test_value_defaults_to_the_node_input() -> None:
    cases = [{"handle": "eu", "equals": {"region": "eu"}}]
    assert run_node("SWITCH", {"cases": cases}, input={"region": "eu"})["handle"] == "eu"


def test_string_operators_and_case_insensitivity() -> None:
    cases = [
        {"handle": "err", "operator": "starts_with", "value": "ERR", "caseSensitive": False},
        {"handle": "num", "operator": "regex", "value": r"^\d+$"},
    ]
    assert run_node("SWITCH", {"value": "error: boom", "cases": cases})["handle"] == "err"
    assert run_node("SWITCH", {"value": "123", "cases": cases})["handle"] == "num"


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"value": 1}, "cases"),
        ({"value": 1, "cases": []}, "cases"),
        ({"value": 1, "cases": "a"}, "cases"),
        ({"value": 1, "cases": [1]}, "cases/0"),
        ({"value": 1, "cases": [{"equals": 1}]}, "cases/0: handle"),
        ({"value": 1, "cases": [{"handle": "", "equals": 1}]}, "cases/0: handle"),
        ({"value": 1, "cases": [{"handle": "error", "equals": 1}]}, "reserved"),
        ({"value": 1, "cases": [{"handle": "a", "equals": 1}, {"handle": "a", "equals": 2}]}, "cases/1"),
        ({"value": 1, "cases": [{"handle": "a"}]}, "needs 'equals' or 'operator'"),
        ({"value": 1, "cases": [{"handle": "a", "operator": "nope", "value": 1}]}, "unknown operator"),
        ({"value": "x", "cases": [{"handle": "a", "operator": "gt", "value": 1, "dataType": "number"}]}, "not a number"),
        ({"value": 1, "cases": [{"handle": "a", "equals": 1}], "default_handle": 5}, "default_handle"),
        ({"value": 1, "cases": [{"handle": "h" * 101, "equals": 1}]}, "handle"),
        ({"value": 1, "cases": [{"handle": f"h{i}", "equals": i} for i in range(101)]}, "at most 100"),
    ],
)
def test_bad_configs_are_validation_errors(config: dict[str, object], fragment: str) -> None:
    err = node_error("SWITCH", config)
    assert err.code == "validation"
    assert fragment in err.message


def test_duplicate_handle_is_rejected_even_after_a_match() -> None:
    # Handles are checked before evaluating, so a broken config fails every run, not only some.
    cases = [{"handle": "a", "equals": 1}, {"handle": "a", "equals": 2}]
    assert node_error("SWITCH", {"value": 1, "cases": cases}).code == "validation"


def test_big_value_is_not_copied_into_the_output() -> None:
    value = {"blob": "x" * 10_000}
    out = run_node("SWITCH", {"value": value, "cases": [{"handle": "a", "operator": "is_not_empty"}]})
    assert out["handle"] == "a"
    assert isinstance(out["value"], str) and "characters" in out["value"]
