"""CALCULATOR handler: safe expressions (no eval), named operations, DoS guards."""

from __future__ import annotations

import math
import time

import pytest

from tests.executions.nodes.conftest import node_error, run_node


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 3", 1),
        ("2 ** 10", 1024),
        ("-3 + +1", -2),
        ("abs(-4.5)", 4.5),
        ("min(3, 1, 2)", 1),
        ("max(3, 1, 2)", 3),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("floor(2.7)", 2),
        ("ceil(2.1)", 3),
        ("sqrt(16)", 4.0),
        ("log(100, 10)", 2.0),
        ("log10(1000)", 3.0),
        ("pow(2, 8)", 256),
        ("exp(0)", 1.0),
        ("2 ** -1", 0.5),
        ("1 < 2 < 3", True),
        ("1 < 2 > 3", False),
        ("3 == 3.0", True),
        ("1 if 2 > 1 else 0", 1),
        ("not 0", True),
        ("0 or 5", 5),
    ],
)
def test_expressions(expression: str, expected: object) -> None:
    assert run_node("CALCULATOR", {"expression": expression}) == {"result": expected}


def test_constants_and_variables() -> None:
    out = run_node("CALCULATOR", {"expression": "price * qty + tax", "variables": {"price": 2.5, "qty": "4", "tax": 1}})
    assert out == {"result": 11.0}
    assert run_node("CALCULATOR", {"expression": "pi"})["result"] == pytest.approx(math.pi)
    assert run_node("CALCULATOR", {"expression": "flag + 1", "variables": {"flag": True}})["result"] == 2


def test_precision() -> None:
    assert run_node("CALCULATOR", {"expression": "10 / 3", "precision": 2}) == {"result": 3.33}


def test_prerendered_whole_template_value() -> None:
    # {{ nodes.a.output.n * 2 }} arrives already evaluated by the engine.
    assert run_node("CALCULATOR", {"expression": 42}) == {"result": 42}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"operation": "add", "a": 2, "b": 3}, 5),
        ({"operation": "subtract", "a": "10", "b": 4}, 6),
        ({"operation": "multiply", "a": 2.5, "b": 4}, 10.0),
        ({"operation": "divide", "a": 9, "b": 2}, 4.5),
        ({"operation": "power", "a": 2, "b": 16}, 65536),
        ({"operation": "modulo", "a": 10, "b": 3}, 1),
        ({"operation": "fibonacci", "n": 10}, 55),
        ({"operation": "fibonacci", "n": 0}, 0),
        ({"operation": "fibonacci", "n": "20"}, 6765),
        ({"operation": "fibonacci", "n": 10.0}, 55),
    ],
)
def test_named_operations(config: dict[str, object], expected: object) -> None:
    assert run_node("CALCULATOR", config) == {"result": expected}


def test_fibonacci_1000_is_allowed_and_1001_is_not() -> None:
    assert run_node("CALCULATOR", {"operation": "fibonacci", "n": 1000})["result"] > 10**200
    assert node_error("CALCULATOR", {"operation": "fibonacci", "n": 1001}).code == "validation"
    assert node_error("CALCULATOR", {"operation": "fibonacci", "n": -1}).code == "validation"
    assert node_error("CALCULATOR", {"operation": "fibonacci", "n": 2.5}).code == "validation"
    assert node_error("CALCULATOR", {"operation": "fibonacci", "n": True}).code == "validation"
    assert node_error("CALCULATOR", {"operation": "fibonacci"}).code == "validation"


@pytest.mark.parametrize(
    "config",
    [
        {"expression": "1 / 0"},
        {"expression": "1 // 0"},
        {"expression": "1 % 0"},
        {"expression": "0 ** -1"},
        {"operation": "divide", "a": 1, "b": 0},
        {"operation": "modulo", "a": 1, "b": "0"},
    ],
)
def test_division_by_zero_is_validation(config: dict[str, object]) -> None:
    err = node_error("CALCULATOR", config)
    assert err.code == "validation"
    assert "zero" in err.message


@pytest.mark.parametrize(
    "expression",
    [
        "9**9**9",
        "10**10**10",
        "2**100000",
        "(10**300) * (10**300)",
        "pow(99, 99999)",
        "1e308 * 10",
        "2.0 ** 5000",
        "exp(1000)",
        "9" * 400,
        "(-8) ** 0.5",
    ],
)
def test_catastrophic_numbers_fail_fast(expression: str) -> None:
    start = time.monotonic()
    err = node_error("CALCULATOR", {"expression": expression})
    assert err.code == "validation"
    assert time.monotonic() - start < 0.5


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("__import__('os').system('true')", "not allowed"),
        ("().__class__", "not allowed"),
        ("x.real", "not allowed"),
        ("'a' * 3", "only numbers"),
        ("[1, 2]", "not allowed"),
        ("open('/etc/passwd')", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("max(*[1])", "positional"),
        ("round(1.5, ndigits=1)", "positional"),
        ("a + 1", "unknown variable"),
        ("1 +", "not valid"),
        ("sqrt(-1)", "not defined"),
        ("log(0)", "positive"),
        ("abs(1, 2)", "takes 1"),
        ("1 in 2", "not allowed"),
        ("x := 1", "not valid"),
    ],
)
def test_disallowed_syntax(expression: str, fragment: str) -> None:
    err = node_error("CALCULATOR", {"expression": expression})
    assert err.code == "validation"
    assert fragment in err.message


def test_oversized_and_deep_expressions() -> None:
    assert node_error("CALCULATOR", {"expression": "1+" * 1500 + "1"}).code == "validation"
    assert node_error("CALCULATOR", {"expression": "(" * 900 + "1" + ")" * 900}).code == "validation"
    assert node_error("CALCULATOR", {"expression": "-" * 1999 + "1"}).code == "validation"
    assert node_error("CALCULATOR", {"expression": "1+1" * 1000}).code == "validation"


def test_bad_configs() -> None:
    assert node_error("CALCULATOR", {}).code == "validation"
    assert node_error("CALCULATOR", {"expression": "1", "operation": "add"}).code == "validation"
    assert node_error("CALCULATOR", {"operation": "sqrt", "a": 1}).code == "validation"
    assert node_error("CALCULATOR", {"operation": "add", "a": 1}).code == "validation"
    assert node_error("CALCULATOR", {"operation": "add", "a": "one", "b": 1}).code == "validation"
    assert node_error("CALCULATOR", {"operation": "add", "a": True, "b": 1}).code == "validation"
    assert node_error("CALCULATOR", {"operation": "add", "a": 2**2000, "b": 1}).code == "validation"
    assert node_error("CALCULATOR", {"expression": ""}).code == "validation"
    assert node_error("CALCULATOR", {"expression": None}).code == "validation"
    assert node_error("CALCULATOR", {"expression": float("nan")}).code == "validation"
    assert node_error("CALCULATOR", {"expression": "a", "variables": {"a": [1]}}).code == "validation"
    assert node_error("CALCULATOR", {"expression": "a", "variables": {"not valid": 1}}).code == "validation"
    assert node_error("CALCULATOR", {"expression": "a", "variables": "a=1"}).code == "validation"
    assert node_error("CALCULATOR", {"expression": "1", "precision": 99}).code == "validation"
    assert node_error("CALCULATOR", "1 + 1").code == "validation"


def test_forty_fibonacci_nodes_are_cheap() -> None:
    # The Windmill benchmark runs 40 of these in sequence; the handler must not be the bottleneck.
    start = time.monotonic()
    for _ in range(40):
        assert run_node("CALCULATOR", {"operation": "fibonacci", "n": 10}) == {"result": 55}
    assert time.monotonic() - start < 0.1
