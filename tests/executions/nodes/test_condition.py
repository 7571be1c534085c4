"""CONDITION handler: expression and comparator forms, coercion, hostile input."""

from __future__ import annotations

import time
from typing import Any

import pytest

from executions.nodes.condition import compare, truthy
from tests.executions.nodes.conftest import node_error, run_node


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (None, False),
        (0, False),
        (0.0, False),
        (3, True),
        (-1.5, True),
        ("", False),
        ("  FALSE ", False),
        ("no", False),
        ("off", False),
        ("0", False),
        ("null", False),
        ("yes", True),
        ("true", True),
        ("anything", True),
        ([], False),
        ([0], True),
        ({}, False),
        ({"a": 1}, True),
    ],
)
def test_expression_truthiness(value: object, expected: bool) -> None:
    out = run_node("CONDITION", {"expression": value}, raw_config={"expression": "{{ x }}"})
    assert out["result"] is expected


def test_rendered_boolean_expression_keeps_its_value_in_output() -> None:
    out = run_node("CONDITION", {"expression": True}, raw_config={"expression": "{{ nodes.a.output.ok }}"})
    assert out == {"result": True, "value": True}


def test_bare_expression_is_evaluated_in_the_sandbox() -> None:
    raw = {"expression": "input.amount > 100 and nodes.fetch.output.status == 200"}
    ok = run_node("CONDITION", raw, run_input={"amount": 150}, inputs_by_node={"fetch": {"status": 200}}, raw_config=raw)
    assert ok["result"] is True
    low = run_node("CONDITION", raw, run_input={"amount": 50}, inputs_by_node={"fetch": {"status": 200}}, raw_config=raw)
    assert low["result"] is False


def test_bare_expression_naming_missing_data_is_a_template_error() -> None:
    raw = {"expression": "nodes.nope.output.x == 1"}
    err = node_error("CONDITION", raw, raw_config=raw)
    assert err.code == "template"
    assert "nodes.nope.output.x" in err.message


def test_bare_expression_cannot_escape_the_sandbox() -> None:
    raw = {"expression": "input.__class__.__mro__"}
    err = node_error("CONDITION", raw, raw_config=raw)
    assert err.code == "template"


def test_comparator_rows_and_or() -> None:
    rows: list[dict[str, Any]] = [
        {"leftValue": 200, "operator": "equals", "rightValue": 200, "dataType": "number"},
        {"leftValue": "hello world", "operator": "contains", "rightValue": "world", "dataType": "string"},
    ]
    out = run_node("CONDITION", {"conditions": rows, "combinator": "and"})
    assert out["result"] is True
    assert [c["result"] for c in out["conditions"]] == [True, True]
    rows[1]["rightValue"] = "mars"
    assert run_node("CONDITION", {"conditions": rows, "combinator": "and"})["result"] is False
    assert run_node("CONDITION", {"conditions": rows, "combinator": "or"})["result"] is True
    assert run_node("CONDITION", {"conditions": rows, "combinator": "OR"})["combinator"] == "or"


def test_single_comparator_at_top_level() -> None:
    out = run_node("CONDITION", {"leftValue": "5", "operator": "gt", "rightValue": 3, "dataType": "number"})
    assert out["result"] is True
    assert out["conditions"][0]["operator"] == "gt"


@pytest.mark.parametrize(
    ("left", "op", "right", "dtype", "expected"),
    [
        (200, "equals", 200, "number", True),
        ("200", "equals", 200, None, True),  # builder text fields vs numbers
        (200, "not_equals", 201, None, True),
        (5, "gt", 3, None, True),
        (3, "gt", 5, None, False),
        (5, "gte", 5, "number", True),
        ("2", "lt", "10", "number", True),
        ("2", "lt", "10", "string", False),  # lexicographic
        (10, "lte", 10.0, None, True),
        ("Hello", "contains", "ell", "string", True),
        ("Hello", "not_contains", "xyz", "string", True),
        ([1, 2, 3], "contains", 2, None, True),
        ([1, 2, 3], "contains", "2", "number", True),
        ({"a": 1}, "contains", "a", None, True),
        ("Hello", "starts_with", "He", None, True),
        ("Hello", "ends_with", "lo", None, True),
        ("Hello", "starts_with", "he", None, False),
        ("order-1234", "regex", r"^order-\d{4}$", None, True),
        ("order-12x4", "regex", r"^order-\d{4}$", None, False),
        ("", "is_empty", None, None, True),
        ("   ", "is_empty", None, None, True),
        (None, "is_empty", None, None, True),
        ([], "is_empty", None, None, True),
        ({}, "is_empty", None, None, True),
        (0, "is_empty", None, None, False),
        ("x", "is_not_empty", None, None, True),
        ("yes", "equals", True, "boolean", True),
        ("false", "equals", False, "boolean", True),
        ("2026-01-02T00:00:00Z", "gt", "2026-01-01T23:59:59+00:00", "date", True),
        ("2026-01-02", "lt", "2026-01-01T00:00:00", "date", False),
        (True, "equals", 1, None, False),  # a boolean is not a number
        ({"a": [1, 2]}, "equals", {"a": [1, 2.0]}, None, True),
        (None, "equals", None, None, True),
    ],
)
def test_operators(left: object, op: str, right: object, dtype: str | None, expected: bool) -> None:
    row = {"leftValue": left, "operator": op, "rightValue": right}
    if dtype:
        row["dataType"] = dtype
    assert run_node("CONDITION", {"conditions": [row]})["result"] is expected


@pytest.mark.parametrize(
    ("alias", "canonical_result"),
    [("==", True), ("eq", True), ("notEquals", False), (">=", True), ("greaterThan", False), ("isNotEmpty", True)],
)
def test_operator_aliases(alias: str, canonical_result: bool) -> None:
    assert compare(5, alias, 5) is canonical_result


def test_case_insensitive_string_compare() -> None:
    row: dict[str, Any] = {"leftValue": "HeLLo", "operator": "equals", "rightValue": "hello", "dataType": "string"}
    assert run_node("CONDITION", {"conditions": [row]})["result"] is False
    row["caseSensitive"] = False
    assert run_node("CONDITION", {"conditions": [row]})["result"] is True
    regex = {"leftValue": "ABC", "operator": "regex", "rightValue": "^abc$", "caseSensitive": False}
    assert run_node("CONDITION", {"conditions": [regex]})["result"] is True


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ({"leftValue": "abc", "operator": "gt", "rightValue": 1, "dataType": "number"}, "is not a number"),
        ({"leftValue": "maybe", "operator": "equals", "rightValue": True, "dataType": "boolean"}, "not a boolean"),
        ({"leftValue": "yesterday", "operator": "gt", "rightValue": "2026-01-01", "dataType": "date"}, "ISO 8601"),
        ({"leftValue": 1, "operator": "equals", "rightValue": 1, "dataType": "money"}, "unknown dataType"),
        ({"leftValue": 1, "operator": "between", "rightValue": 1}, "unknown operator"),
        ({"leftValue": {"a": 1}, "operator": "gt", "rightValue": 1}, "cannot order"),
        ({"leftValue": "x", "operator": "regex", "rightValue": "("}, "invalid regex"),
        ({"leftValue": "x", "operator": "regex", "rightValue": 5}, "must be a string"),
        ({"leftValue": float("inf"), "operator": "gt", "rightValue": 1, "dataType": "number"}, "finite"),
    ],
)
def test_coercion_and_operator_errors_are_validation(row: dict[str, object], fragment: str) -> None:
    err = node_error("CONDITION", {"conditions": [row]})
    assert err.code == "validation"
    assert fragment in err.message
    assert "conditions/0" in err.message


def test_regex_caps_on_pattern_and_subject() -> None:
    err = node_error("CONDITION", {"conditions": [{"leftValue": "x", "operator": "regex", "rightValue": "a" * 501}]})
    assert err.code == "validation" and "500" in err.message
    err = node_error("CONDITION", {"conditions": [{"leftValue": "a" * 100_001, "operator": "regex", "rightValue": "a"}]})
    assert err.code == "validation" and "100000" in err.message


def test_malformed_configs() -> None:
    assert node_error("CONDITION", {}).code == "validation"
    assert node_error("CONDITION", {"conditions": []}).code == "validation"
    assert node_error("CONDITION", {"conditions": "x"}).code == "validation"
    assert node_error("CONDITION", {"conditions": [1]}).code == "validation"
    assert node_error("CONDITION", {"conditions": [{"operator": "equals"}], "combinator": "xor"}).code == "validation"
    too_many = [{"leftValue": 1, "operator": "equals", "rightValue": 1}] * 101
    assert node_error("CONDITION", {"conditions": too_many}).code == "validation"
    assert node_error("CONDITION", ["not", "an", "object"]).code == "validation"


def test_non_json_value_is_a_validation_error() -> None:
    err = node_error("CONDITION", {"expression": {1, 2}}, raw_config={"expression": "{{ x }}"})
    assert err.code == "validation"
    with pytest.raises(Exception) as info:
        truthy(object())
    assert getattr(info.value, "code", None) == "validation"


def test_deeply_nested_equality_fails_cleanly() -> None:
    deep: object = 1
    for _ in range(100_000):
        deep = [deep]
    err = node_error("CONDITION", {"conditions": [{"leftValue": deep, "operator": "equals", "rightValue": deep}]})
    assert err.code == "validation"


def test_big_values_are_not_copied_into_the_output() -> None:
    big = ["x" * 100] * 1000
    out = run_node("CONDITION", {"conditions": [{"leftValue": big, "operator": "is_not_empty"}]})
    assert out["result"] is True
    assert isinstance(out["conditions"][0]["leftValue"], str) and "characters" in out["conditions"][0]["leftValue"]


def test_huge_contains_is_fast() -> None:
    start = time.monotonic()
    row = {"leftValue": list(range(100_000)), "operator": "contains", "rightValue": 99_999}
    assert run_node("CONDITION", {"conditions": [row]})["result"] is True
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("pattern", [r"^(a+)+$", r"(\w+\s?)*$", r"(a*)*b", r"(x{1,})+y"])
def test_catastrophic_regex_shapes_are_refused_before_matching(pattern: str) -> None:
    start = time.monotonic()
    row = {"leftValue": "a" * 5_000 + "!", "operator": "regex", "rightValue": pattern}
    err = node_error("CONDITION", {"conditions": [row]})
    assert err.code == "validation" and "repeat" in err.message
    assert time.monotonic() - start < 0.5


@pytest.mark.parametrize(
    ("subject", "pattern"),
    [("shop.example.com", r"^([a-z]+\.)+com$"), ("12-34", r"(\d+)-(\d+)"), ("abab", r"^(ab)+$"), ("order-1234", r"^order-\d{4}$")],
)
def test_ordinary_regexes_still_work(subject: str, pattern: str) -> None:
    row = {"leftValue": subject, "operator": "regex", "rightValue": pattern}
    assert run_node("CONDITION", {"conditions": [row]})["result"] is True
