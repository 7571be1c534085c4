"""Graph: parsing a canonical definition, stable topological order, cycles, ancestry."""

from __future__ import annotations

from typing import Any

import pytest

from executions.engine.graph import CycleError, Edge, Graph, find_cycle, topological_order


def definition(nodes: list[str], edges: list[tuple[str, str]], **node_data: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodes": [{"id": n, "type": "CALCULATOR", "data": node_data.get(n, {"config": {}})} for n in nodes],
        "edges": [{"id": f"e{i}", "source": s, "target": t} for i, (s, t) in enumerate(edges)],
        "settings": {"max_parallel_nodes": 4},
    }


def edges(pairs: list[tuple[str, str]]) -> list[Edge]:
    return [Edge(id=f"e{i}", source=s, target=t, source_handle=None, condition=None) for i, (s, t) in enumerate(pairs)]


def test_diamond() -> None:
    g = Graph.from_definition(definition(["a", "b", "c", "d"], [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]))
    assert g.topo == ["a", "b", "c", "d"]
    assert g.roots() == ["a"] and g.sinks() == ["d"]
    assert g.predecessors("d") == ["b", "c"]
    assert g.ancestors("d") == {"a", "b", "c"}
    assert g.ancestors("a") == set()
    assert g.settings == {"max_parallel_nodes": 4}
    assert g.topo_index == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_non_series_parallel_dag_order_respects_every_edge() -> None:
    pairs = [("A", "C"), ("A", "D"), ("B", "D"), ("B", "E"), ("C", "F"), ("D", "F"), ("E", "F")]
    g = Graph.from_definition(definition(["F", "E", "D", "C", "B", "A"], pairs))
    pos = g.topo_index
    assert all(pos[s] < pos[t] for s, t in pairs)
    assert sorted(g.roots()) == ["A", "B"] and g.sinks() == ["F"]
    assert g.ancestors("F") == {"A", "B", "C", "D", "E"}


def test_topological_order_is_stable_by_declaration_order() -> None:
    assert topological_order(["x", "b", "a"], []) == ["x", "b", "a"]
    assert topological_order(["a", "b", "c"], edges([("c", "a")])) == ["b", "c", "a"]


def test_parallel_edges_between_the_same_pair() -> None:
    d = definition(["cond", "t"], [])
    d["edges"] = [
        {"id": "t", "source": "cond", "target": "t", "sourceHandle": "true"},
        {"id": "f", "source": "cond", "target": "t", "sourceHandle": "false"},
    ]
    g = Graph.from_definition(d)
    assert [e.source_handle for e in g.in_edges["t"]] == ["true", "false"]
    assert g.predecessors("t") == ["cond"]  # de-duplicated


@pytest.mark.parametrize(
    ("pairs", "cycle"),
    [
        ([("a", "a")], {"a"}),
        ([("a", "b"), ("b", "a")], {"a", "b"}),
        ([("r", "a"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "z")], {"a", "b", "c"}),
    ],
)
def test_cycle_is_named(pairs: list[tuple[str, str]], cycle: set[str]) -> None:
    ids = sorted({n for p in pairs for n in p})
    with pytest.raises(CycleError) as info:
        topological_order(ids, edges(pairs))
    assert set(info.value.nodes) == cycle
    assert "cycle through" in str(info.value)


def test_find_cycle_returns_a_real_cycle() -> None:
    pairs = [("a", "b"), ("b", "c"), ("c", "b"), ("c", "d")]
    found = find_cycle(["a", "b", "c", "d"], edges(pairs))
    assert found and all((found[i], found[(i + 1) % len(found)]) in pairs for i in range(len(found)))
    assert find_cycle(["a", "b"], edges([("a", "b")])) == []


def test_node_settings_are_parsed_with_defaults() -> None:
    g = Graph.from_definition(
        definition(
            ["a", "b", "c"],
            [],
            a={
                "label": "Fetch",
                "config": {"x": 1},
                "on_error": "continue",
                "timeout_s": 5,
                "retry": {"max_attempts": 3},
                "output_schema": {"type": "object"},
                "isEnabled": False,
            },
            b={"onError": "error_branch", "timeout_s": True, "retry": "x", "config": "not a dict"},
            c={"on_error": "explode", "timeout_s": "10"},
        )
    )
    a, b, c = g.nodes["a"], g.nodes["b"], g.nodes["c"]
    assert (a.label, a.config, a.on_error, a.timeout_s, a.retry, a.output_schema, a.enabled) == (
        "Fetch",
        {"x": 1},
        "continue",
        5.0,
        {"max_attempts": 3},
        {"type": "object"},
        False,
    )
    assert (b.on_error, b.timeout_s, b.retry, b.config, b.enabled, b.label) == ("error_branch", None, {}, {}, True, "b")
    assert (c.on_error, c.timeout_s) == ("stop", None)


def test_edge_condition_and_handle() -> None:
    d = definition(["a", "b", "c"], [])
    d["edges"] = [
        {"id": "e1", "source": "a", "target": "b", "sourceHandle": "true", "data": {"condition": "{{ output.ok }}"}},
        {"id": "e2", "source": "a", "target": "c", "data": {"condition": "   "}},
    ]
    g = Graph.from_definition(d)
    assert g.out_edges["a"][0] == Edge("e1", "a", "b", "true", "{{ output.ok }}")
    assert g.out_edges["a"][1].condition is None  # blank means none


def test_wide_graph_is_fast() -> None:
    import time

    n = 5_000
    ids = ["root", *[f"n{i}" for i in range(n)], "join"]
    pairs = [("root", f"n{i}") for i in range(n)] + [(f"n{i}", "join") for i in range(n)]
    start = time.monotonic()
    g = Graph.from_definition(definition(ids, pairs))
    assert g.topo[0] == "root" and g.topo[-1] == "join"
    assert len(g.ancestors("join")) == n + 1
    assert time.monotonic() - start < 2
