"""DATA_TRANSFORM handler: every operation, chains, caps and hostile data."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.executions.nodes.conftest import node_error, run_node

ORDERS = [
    {"id": 1, "customer": {"name": "Ann", "tier": "gold"}, "total": 120.5, "tags": ["a", "b"]},
    {"id": 2, "customer": {"name": "Bob", "tier": "silver"}, "total": 30, "tags": []},
    {"id": 3, "customer": {"name": "Cid", "tier": "gold"}, "total": "75", "tags": ["c"]},
    {"id": 4, "customer": {"name": "Dee", "tier": "bronze"}, "total": None, "tags": ["a"]},
]


def transform(operations: list[Any], source: Any = ORDERS, **kwargs: Any) -> Any:
    return run_node("DATA_TRANSFORM", {"source": source, "operations": operations}, **kwargs)["result"]


def test_map_picks_and_renames() -> None:
    out = transform([{"op": "map", "fields": {"order": "id", "who": "customer.name", "first_tag": "tags.0"}}])
    assert out[0] == {"order": 1, "who": "Ann", "first_tag": "a"}
    assert out[1] == {"order": 2, "who": "Bob", "first_tag": None}  # missing path -> null


def test_map_keep_and_single_object() -> None:
    out = transform([{"op": "map", "fields": {"name": "customer.name"}, "keep": True}], source=ORDERS[0])
    assert out["name"] == "Ann" and out["id"] == 1
    assert transform([{"op": "map", "fields": {"x": "a[1].b"}}], source={"a": [{}, {"b": 5}]}) == {"x": 5}


def test_filter_with_condition_operators() -> None:
    gold = transform([{"op": "filter", "field": "customer.tier", "operator": "equals", "value": "gold"}])
    assert [o["id"] for o in gold] == [1, 3]
    big = transform([{"op": "filter", "field": "total", "operator": "gt", "value": 50, "dataType": "number"}])
    # "75" is coerced; the null total simply does not match an ordering test.
    assert [o["id"] for o in big] == [1, 3]
    empty = transform([{"op": "filter", "field": "total", "operator": "is_empty"}])
    assert [o["id"] for o in empty] == [4]
    tagged = transform([{"op": "filter", "field": "tags", "operator": "contains", "value": "a"}])
    assert [o["id"] for o in tagged] == [1, 4]


def test_filter_coercion_error_names_op_and_item() -> None:
    err = node_error(
        "DATA_TRANSFORM",
        {
            "source": [{"v": 1}, {"v": "abc"}],
            "operations": [{"op": "filter", "field": "v", "operator": "gt", "value": 0, "dataType": "number"}],
        },
    )
    assert err.code == "validation"
    assert "operations/0" in err.message and "item 1" in err.message


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        ("sum", 225.5),
        ("avg", 75.16666666666667),
        ("min", 30),
        ("max", 120.5),
        ("count", 4),
        ("first", 120.5),
        ("last", None),
        ("list", [120.5, 30, "75", None]),
    ],
)
def test_aggregate(fn: str, expected: Any) -> None:
    assert transform([{"op": "aggregate", "field": "total", "fn": fn}]) == expected


def test_aggregate_group_by() -> None:
    out = transform([{"op": "aggregate", "field": "total", "fn": "sum", "group_by": "customer.tier"}])
    assert out == {"gold": 195.5, "silver": 30, "bronze": 0}
    counts = transform([{"op": "aggregate", "fn": "count", "group_by": "customer.tier"}])
    assert counts == {"gold": 2, "silver": 1, "bronze": 1}


def test_aggregate_of_empty_list() -> None:
    assert transform([{"op": "aggregate", "fn": "sum"}], source=[]) == 0
    assert transform([{"op": "aggregate", "fn": "avg"}], source=[]) is None
    assert transform([{"op": "aggregate", "fn": "max"}], source=[]) is None


def test_aggregate_errors() -> None:
    err = node_error(
        "DATA_TRANSFORM",
        {"source": [1, "x"], "operations": [{"op": "map", "fields": {"v": ""}}, {"op": "aggregate", "field": "v", "fn": "sum"}]},
    )
    assert err.code == "validation" and "operations/1" in err.message
    err = node_error("DATA_TRANSFORM", {"source": [1e308, 1e308], "operations": [{"op": "aggregate", "fn": "sum"}]})
    assert err.code == "validation" and "overflow" in err.message
    err = node_error("DATA_TRANSFORM", {"source": [1], "operations": [{"op": "aggregate", "fn": "median"}]})
    assert err.code == "validation" and "fn must be one of" in err.message


def test_format_is_plain_substitution() -> None:
    out = transform([{"op": "format", "template": "#{id} {customer.name} ({tags}) {missing}!"}])
    assert out[0] == '#1 Ann (["a", "b"]) !'
    added = transform([{"op": "format", "template": "{customer.name}: {total}", "field": "line"}])
    assert added[0]["line"] == "Ann: 120.5" and added[0]["id"] == 1
    assert transform([{"op": "format", "template": "{}"}], source=5) == "5"


def test_format_gives_no_attribute_access_or_format_specs() -> None:
    hostile = "{__class__} {id.__class__.__mro__} {0.__globals__} {id!r} {id:>10}"
    out = transform([{"op": "format", "template": hostile}], source={"id": 7})
    # Attribute-like names are plain (missing) keys; specs are not placeholders at all.
    assert out == "   {id!r} {id:>10}"
    assert "class" not in out


def test_format_output_is_capped() -> None:
    err = node_error(
        "DATA_TRANSFORM",
        {"source": [{"s": "x" * 10_000}] * 1_000, "operations": [{"op": "format", "template": "{s}{s}"}]},
    )
    assert err.code == "validation" and "characters" in err.message


def test_extract() -> None:
    assert transform([{"op": "extract", "path": "1.customer.name"}]) == "Bob"
    assert transform([{"op": "extract", "path": "9.id", "default": 0}]) == 0
    err = node_error("DATA_TRANSFORM", {"source": ORDERS, "operations": [{"op": "extract", "path": "9.id"}]})
    assert err.code == "validation" and "'9.id' was not found" in err.message


def test_combine_modes() -> None:
    assert transform([{"op": "combine", "mode": "merge"}], source=[{"a": 1}, {"b": 2}, None, {"a": 3}]) == {"a": 3, "b": 2}
    assert transform([{"op": "combine", "mode": "concat"}], source=[[1, 2], [3], 4]) == [1, 2, 3, 4]
    zipped = transform([{"op": "combine", "mode": "zip", "sources": [[{"a": 1}, {"a": 2}], [{"b": 1}, {"b": 2}, {"b": 3}]]}])
    assert zipped == [{"a": 1, "b": 1}, {"a": 2, "b": 2}]
    assert transform([{"op": "combine", "mode": "zip"}], source=[[1, 2], ["x", "y"]]) == [[1, "x"], [2, "y"]]


def test_combine_several_inputs_by_template() -> None:
    # A MERGE-like use: sources rendered from two upstream outputs.
    out = run_node(
        "DATA_TRANSFORM",
        {"operations": [{"op": "combine", "mode": "merge", "sources": [{"user": "ann"}, {"score": 9}]}]},
        input={"ignored": True},
    )
    assert out == {"result": {"user": "ann", "score": 9}}


def test_combine_errors() -> None:
    assert "item 1" in node_error("DATA_TRANSFORM", {"source": [{}, 1], "operations": [{"op": "combine", "mode": "merge"}]}).message
    assert node_error("DATA_TRANSFORM", {"source": {}, "operations": [{"op": "combine", "mode": "concat"}]}).code == "validation"
    assert node_error("DATA_TRANSFORM", {"source": [[1], 2], "operations": [{"op": "combine", "mode": "zip"}]}).code == "validation"


def test_sort_limit_unique() -> None:
    by_total = transform([{"op": "sort", "field": "total", "order": "desc"}])
    # Numbers before strings, nulls last in either order.
    assert [o["id"] for o in by_total] == [3, 1, 2, 4]
    assert [o["id"] for o in transform([{"op": "sort", "field": "customer.name"}])] == [1, 2, 3, 4]
    assert transform([{"op": "sort"}], source=[3, None, "b", 1, True, "a"]) == [1, 3, "a", "b", True, None]
    assert [o["id"] for o in transform([{"op": "limit", "count": 2, "offset": "1"}])] == [2, 3]
    assert [o["id"] for o in transform([{"op": "unique", "field": "customer.tier"}])] == [1, 2, 4]
    assert transform([{"op": "unique"}], source=[1, 1.0, "1", {"a": 1}, {"a": 1}]) == [1, "1", {"a": 1}]


def test_chain_of_operations() -> None:
    out = transform(
        [
            {"op": "filter", "field": "customer.tier", "operator": "equals", "value": "gold"},
            {"op": "map", "fields": {"name": "customer.name", "total": "total"}},
            {"op": "sort", "field": "name", "order": "desc"},
            {"op": "format", "template": "{name}={total}"},
        ]
    )
    assert out == ["Cid=75", "Ann=120.5"]


def test_source_defaults_to_the_node_input() -> None:
    out = run_node("DATA_TRANSFORM", {"operations": [{"op": "extract", "path": "a"}]}, input={"a": [1]})
    assert out == {"result": [1]}
    assert run_node("DATA_TRANSFORM", {"operations": []}, input={"a": 1}) == {"result": {"a": 1}}


@pytest.mark.parametrize(
    ("operations", "fragment"),
    [
        ([{"op": "explode"}], "operations/0: unknown op"),
        ([{"fields": {}}], "operations/0: unknown op"),
        (["map"], "operations/0: an operation must be an object"),
        ([{"op": "limit", "count": 1}, {"op": "map"}], "operations/1 (map)"),
        ([{"op": "map", "fields": {"a": 5}}], "path must be a string"),
        ([{"op": "map", "fields": {"a": "x..y"}}], "empty segment"),
        ([{"op": "map", "fields": {"a": "x[y]"}}], "malformed"),
        ([{"op": "limit", "count": -1}], "negative"),
        ([{"op": "limit", "count": 1.5}], "whole number"),
        ([{"op": "limit"}], "needs a count"),
        ([{"op": "sort", "order": "up"}], "order"),
        ([{"op": "filter", "field": "id"}], "needs an operator"),
        ([{"op": "extract", "path": "a" * 501}], "longer than 500"),
        ([{"op": "extract", "path": ".".join(["a"] * 51)}], "more than 50 parts"),
        ([{"op": "format"}], "template"),
        ([{"op": "format", "template": "x", "field": "f"}], "needs objects"),
    ],
)
def test_bad_operations_name_the_index(operations: list[Any], fragment: str) -> None:
    source: Any = [1, 2] if operations and isinstance(operations[-1], dict) and operations[-1].get("field") == "f" else ORDERS
    err = node_error("DATA_TRANSFORM", {"source": source, "operations": operations})
    assert err.code == "validation"
    assert fragment in err.message


def test_operations_on_the_wrong_shape() -> None:
    err = node_error("DATA_TRANSFORM", {"source": {"a": 1}, "operations": [{"op": "sort"}]})
    assert err.code == "validation" and "sort needs a list, got an object" in err.message


def test_config_shape_errors() -> None:
    assert node_error("DATA_TRANSFORM", {"source": [], "operations": "map"}).code == "validation"
    assert node_error("DATA_TRANSFORM", {"source": [], "operations": [{"op": "limit", "count": 1}] * 101}).code == "validation"
    assert node_error("DATA_TRANSFORM", [1]).code == "validation"


def test_hostile_sources() -> None:
    deep: Any = 1
    for _ in range(10_000):
        deep = {"a": deep}
    err = node_error("DATA_TRANSFORM", {"source": deep, "operations": []})
    assert err.code == "validation" and "nested deeper" in err.message
    assert "not JSON" in node_error("DATA_TRANSFORM", {"source": {"a": {1, 2}}, "operations": []}).message
    assert "not JSON" in node_error("DATA_TRANSFORM", {"source": [b"bytes"], "operations": []}).message
    assert "non-finite" in node_error("DATA_TRANSFORM", {"source": [float("nan")], "operations": []}).message
    assert "non-string" in node_error("DATA_TRANSFORM", {"source": {1: 2}, "operations": []}).message
    err = node_error("DATA_TRANSFORM", {"source": list(range(100_001)), "operations": [{"op": "limit", "count": 1}]})
    assert err.code == "validation" and "100000" in err.message
    err = node_error("DATA_TRANSFORM", {"source": [[0] * 1000] * 1001, "operations": []})
    assert err.code == "validation" and "more than" in err.message


def test_concat_growth_is_capped() -> None:
    big = [list(range(60_000)), list(range(60_000))]
    err = node_error("DATA_TRANSFORM", {"source": big, "operations": [{"op": "combine", "mode": "concat"}]})
    assert err.code == "validation" and "100000" in err.message


def test_large_but_allowed_lists_are_fast() -> None:
    source = [{"id": i, "g": i % 10, "v": i * 0.5} for i in range(50_000)]
    start = time.monotonic()
    out = transform(
        [
            {"op": "filter", "field": "v", "operator": "gte", "value": 100},
            {"op": "sort", "field": "v", "order": "desc"},
            {"op": "aggregate", "field": "v", "fn": "avg", "group_by": "g"},
        ],
        source=source,
    )
    assert len(out) == 10
    assert time.monotonic() - start < 5
