"""Routing: handles, edge conditions, skip propagation, merges, error branches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from executions.engine.graph import Graph
from executions.engine.routing import NodeState, Outcome, edge_active, resolve, selected_handle
from executions.engine.templates import evaluate


class Run:
    """The routing core driven like the engine drives it, with states in a dict instead of rows."""

    def __init__(self, definition: dict[str, Any]) -> None:
        self.graph = Graph.from_definition(definition)
        self.states = {
            nid: NodeState(status="pending", pending_deps=len(self.graph.in_edges[nid]), active_in=0) for nid in self.graph.nodes
        }
        self.loads: list[list[str]] = []
        self.taken: list[str] = []
        self.skipped_edges: list[str] = []

    def load(self, ids: list[str]) -> dict[str, NodeState]:
        self.loads.append(ids)
        return {nid: self.states[nid] for nid in ids}

    def finish(self, node_id: str, outcome: Outcome) -> tuple[list[str], list[str]]:
        self.states[node_id].status = outcome.status
        res, touched = resolve(self.graph, node_id, outcome, self.load, edge_condition)
        for nid, st in touched.items():
            assert st is self.states[nid]
        self.taken += [e.id for e in res.edges_taken]
        self.skipped_edges += [e.id for e in res.edges_skipped]
        return res.ready, res.skipped


def edge_condition(expression: str, output: Any, source: str) -> bool:
    # As the executor does: the source's output is `output` and `nodes.<source>.output`.
    return bool(evaluate(expression, {"output": output, "nodes": {source: {"output": output}}}))


def doc(nodes: dict[str, str], edges: Sequence[tuple[str, ...]], conditions: dict[str, str] | None = None) -> dict[str, Any]:
    out_edges = []
    for e in edges:
        edge: dict[str, Any] = {"id": f"{e[0]}>{e[1]}" + (f":{e[2]}" if len(e) > 2 else ""), "source": e[0], "target": e[1]}
        if len(e) > 2:
            edge["sourceHandle"] = e[2]
        if conditions and edge["id"] in conditions:
            edge["data"] = {"condition": conditions[edge["id"]]}
        out_edges.append(edge)
    return {"nodes": [{"id": n, "type": t, "data": {"config": {}}} for n, t in nodes.items()], "edges": out_edges}


CONDITION_FLOW = doc(
    {"start": "MANUAL", "check": "CONDITION", "yes": "EMAIL", "yes2": "EMAIL", "no": "EMAIL", "no2": "EMAIL", "merge": "MERGE"},
    [
        ("start", "check"),
        ("check", "yes", "true"),
        ("check", "no", "false"),
        ("yes", "yes2"),
        ("no", "no2"),
        ("yes2", "merge"),
        ("no2", "merge"),
    ],
)


def test_selected_handle() -> None:
    assert selected_handle("CONDITION", {"result": True}) == "true"
    assert selected_handle("CONDITION", {"result": False}) == "false"
    assert selected_handle("CONDITION", {"result": "yes"}) == "false"  # only a real true takes the true branch
    assert selected_handle("CONDITION", True) == "true"
    assert selected_handle("SWITCH", {"handle": "b"}) == "b"
    assert selected_handle("SWITCH", {}) == "default"
    assert selected_handle("HTTP_REQUEST", {"result": True}) is None


def test_untaken_branch_is_skipped_transitively_and_the_merge_runs_once() -> None:
    run = Run(CONDITION_FLOW)
    assert run.finish("start", Outcome("succeeded", {})) == (["check"], [])
    ready, skipped = run.finish("check", Outcome("succeeded", {"result": True}))
    assert ready == ["yes"]
    assert set(skipped) == {"no", "no2"}  # the skip propagated down the false chain
    assert run.states["merge"].pending_deps == 1 and run.states["merge"].active_in == 0
    assert run.finish("yes", Outcome("succeeded", {})) == (["yes2"], [])
    assert run.finish("yes2", Outcome("succeeded", {})) == (["merge"], [])
    assert run.states["merge"].active_in == 1
    assert "check>no:false" in run.skipped_edges and "check>yes:true" in run.taken


def test_false_result_takes_the_false_branch() -> None:
    run = Run(CONDITION_FLOW)
    run.finish("start", Outcome("succeeded", {}))
    ready, skipped = run.finish("check", Outcome("succeeded", {"result": False}))
    assert ready == ["no"] and set(skipped) == {"yes", "yes2"}


def test_both_branches_skipped_skips_the_merge() -> None:
    run = Run(CONDITION_FLOW)
    run.finish("start", Outcome("succeeded", {}))
    run.finish("check", Outcome("succeeded", {"result": True}))
    ready, skipped = run.finish("yes", Outcome("failed"))
    assert ready == [] and set(skipped) == {"yes2", "merge"}


def test_switch_routes_by_case_handle() -> None:
    d = doc(
        {"sw": "SWITCH", "a": "EMAIL", "b": "EMAIL", "d": "EMAIL", "after_b": "EMAIL"},
        [("sw", "a", "a"), ("sw", "b", "b"), ("sw", "d", "default"), ("b", "after_b")],
    )
    run = Run(d)
    ready, skipped = run.finish("sw", Outcome("succeeded", {"handle": "b"}))
    assert ready == ["b"] and set(skipped) == {"a", "d"}
    run = Run(d)
    ready, skipped = run.finish("sw", Outcome("succeeded", {"handle": None, "value": 1}))
    assert ready == ["d"] and set(skipped) == {"a", "b", "after_b"}


def test_edge_conditions_route_on_the_source_output() -> None:
    d = doc(
        {"fetch": "HTTP_REQUEST", "ok": "EMAIL", "alert": "EMAIL", "always": "EMAIL"},
        [("fetch", "ok"), ("fetch", "alert"), ("fetch", "always")],
        conditions={"fetch>ok": "{{ output.status == 200 }}", "fetch>alert": "nodes.fetch.output.status >= 500"},
    )
    run = Run(d)
    ready, skipped = run.finish("fetch", Outcome("succeeded", {"status": 503}))
    assert sorted(ready) == ["alert", "always"] and skipped == ["ok"]


def test_edge_condition_without_an_evaluator_is_inactive() -> None:
    d = doc({"a": "CALCULATOR", "b": "CALCULATOR"}, [("a", "b")], conditions={"a>b": "output.x"})
    g = Graph.from_definition(d)
    assert edge_active(g, g.edges[0], Outcome("succeeded", {"x": 1}), None) is False
    assert edge_active(g, g.edges[0], Outcome("succeeded", {"x": 1}), edge_condition) is True


def test_error_branch_takes_only_error_edges() -> None:
    d = doc(
        {"call": "HTTP_REQUEST", "next": "EMAIL", "handler": "NOTIFICATION"},
        [("call", "next"), ("call", "handler", "error")],
    )
    run = Run(d)
    ready, skipped = run.finish("call", Outcome("failed", {"code": "http_5xx"}, error_branch=True))
    assert ready == ["handler"] and skipped == ["next"]
    run = Run(d)
    ready, skipped = run.finish("call", Outcome("succeeded", {"status": 200}))
    assert ready == ["next"] and skipped == ["handler"]


def test_failed_or_cancelled_node_skips_its_successors() -> None:
    d = doc({"a": "CALCULATOR", "b": "CALCULATOR", "c": "CALCULATOR"}, [("a", "b"), ("b", "c")])
    for status in ("failed", "cancelled", "timed_out", "skipped"):
        run = Run(d)
        assert run.finish("a", Outcome(status)) == ([], ["b", "c"])


def test_disabled_node_passes_through_on_every_non_error_edge() -> None:
    d = doc(
        {"check": "CONDITION", "t": "EMAIL", "f": "EMAIL", "e": "EMAIL"},
        [("check", "t", "true"), ("check", "f", "false"), ("check", "e", "error")],
    )
    run = Run(d)
    ready, skipped = run.finish("check", Outcome("succeeded", {"x": 1}, passthrough=True))
    assert sorted(ready) == ["f", "t"] and skipped == ["e"]


def test_fan_in_waits_for_every_incoming_edge() -> None:
    branches = [f"b{i}" for i in range(50)]
    d = doc(
        {"root": "MANUAL", **dict.fromkeys(branches, "CALCULATOR"), "join": "MERGE"},
        [("root", b) for b in branches] + [(b, "join") for b in branches],
    )
    run = Run(d)
    ready, _ = run.finish("root", Outcome("succeeded", {}))
    assert sorted(ready) == sorted(branches)
    for b in branches[:-1]:
        assert run.finish(b, Outcome("succeeded", {})) == ([], [])
    assert run.finish(branches[-1], Outcome("succeeded", {})) == (["join"], [])
    assert run.states["join"].active_in == 50


def test_non_series_parallel_dag_with_a_skip() -> None:
    # A->C, A->D, B->D, B->E, C->F, D->F, E->F; A fails: C is skipped, D and F still run.
    d = doc(
        dict.fromkeys("ABCDEF", "CALCULATOR"),
        [("A", "C"), ("A", "D"), ("B", "D"), ("B", "E"), ("C", "F"), ("D", "F"), ("E", "F")],
    )
    run = Run(d)
    assert run.finish("A", Outcome("failed")) == ([], ["C"])
    assert sorted(run.finish("B", Outcome("succeeded", {}))[0]) == ["D", "E"]
    assert run.finish("D", Outcome("succeeded", {})) == ([], [])
    assert run.finish("E", Outcome("succeeded", {})) == (["F"], [])


def test_resolved_successors_are_left_alone() -> None:
    d = doc({"a": "CALCULATOR", "b": "CALCULATOR"}, [("a", "b")])
    run = Run(d)
    run.states["b"].status = "succeeded"  # resume re-ran a, b already done
    assert run.finish("a", Outcome("succeeded", {})) == ([], [])
    assert run.states["b"].pending_deps == 1 and run.states["b"].status == "succeeded"


def test_load_is_lazy_and_batched() -> None:
    d = doc({"a": "CALCULATOR", "b": "CALCULATOR", "c": "CALCULATOR", "z": "CALCULATOR"}, [("a", "b"), ("a", "c"), ("a", "b")])
    run = Run(d)
    run.finish("a", Outcome("succeeded", {}))
    assert run.loads == [["b", "c"]]  # each successor loaded once; unrelated "z" never
