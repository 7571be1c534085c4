"""Routing and skip propagation.

When a node reaches a terminal state, each outgoing edge is resolved active or
inactive. A successor whose incoming edges are all resolved becomes ready when
at least one was active, and is skipped otherwise; a skip resolves the skipped
node's own edges as inactive, and so on. So the untaken side of a condition
never runs, and a node where both sides merge runs exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from executions.engine.graph import Edge, Graph

# (expression, the source's output, the source's node id) -> bool
ConditionEval = Callable[[str, Any, str], bool]


@dataclass
class NodeState:
    status: str
    pending_deps: int
    active_in: int
    changed: bool = False


@dataclass
class Outcome:
    """How a node ended, as far as routing cares."""

    status: str  # succeeded | failed | skipped | cancelled | timed_out
    output: Any = None
    # error_branch: the node failed and its `error` edges carry the error.
    error_branch: bool = False
    # A disabled node passes its input through: all its edges are active.
    passthrough: bool = False


@dataclass
class Resolution:
    ready: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    edges_taken: list[Edge] = field(default_factory=list)
    edges_skipped: list[Edge] = field(default_factory=list)


def selected_handle(node_type: str, output: Any) -> str | None:
    """The handle a routing node chose, or None for a plain node."""
    if node_type == "CONDITION":
        result = output.get("result") if isinstance(output, dict) else output
        return "true" if result is True else "false"
    if node_type == "SWITCH":
        handle = output.get("handle") if isinstance(output, dict) else None
        return str(handle) if handle is not None else "default"
    return None


def edge_active(graph: Graph, edge: Edge, outcome: Outcome, evaluate: ConditionEval | None) -> bool:
    if outcome.passthrough:
        return edge.source_handle != "error"
    if outcome.error_branch:
        return edge.source_handle == "error"
    if outcome.status != "succeeded":
        return False
    if edge.source_handle == "error":
        return False
    node = graph.nodes[edge.source]
    chosen = selected_handle(node.type, outcome.output)
    if chosen is not None and edge.source_handle != chosen:
        return False
    if edge.condition is not None:
        if evaluate is None:
            return False
        return bool(evaluate(edge.condition, outcome.output, edge.source))
    return True


def resolve(
    graph: Graph,
    node_id: str,
    outcome: Outcome,
    load: Callable[[list[str]], dict[str, NodeState]],
    evaluate: ConditionEval | None = None,
) -> tuple[Resolution, dict[str, NodeState]]:
    """Resolve ``node_id``'s outgoing edges and propagate skips.

    ``load`` fetches the states of the given successor ids (lazily, so a run's
    bookkeeping only touches the rows it changes). Returns the resolution and
    every state it touched (``changed`` set on those it modified).
    """
    res = Resolution()
    states: dict[str, NodeState] = {}
    work: list[tuple[str, Outcome]] = [(node_id, outcome)]
    while work:
        source, out = work.pop()
        edges = graph.out_edges.get(source, [])
        missing = [e.target for e in edges if e.target not in states]
        if missing:
            states.update(load(list(dict.fromkeys(missing))))
        for edge in edges:
            active = edge_active(graph, edge, out, evaluate)
            (res.edges_taken if active else res.edges_skipped).append(edge)
            st = states[edge.target]
            if st.status != "pending" or st.pending_deps == 0:
                # Already resolved (resume re-opened a later node, or a duplicate); leave it.
                continue
            st.pending_deps -= 1
            if active:
                st.active_in += 1
            st.changed = True
            if st.pending_deps == 0:
                if st.active_in > 0:
                    res.ready.append(edge.target)
                else:
                    st.status = "skipped"
                    res.skipped.append(edge.target)
                    work.append((edge.target, Outcome(status="skipped")))
    return res, states
