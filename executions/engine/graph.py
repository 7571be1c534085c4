"""The DAG of a canonical definition: adjacency, topological order, per-node settings."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Edge:
    id: str
    source: str
    target: str
    source_handle: str | None
    condition: str | None  # expression on the source's output (edge.data.condition)


@dataclass(frozen=True)
class Node:
    id: str
    type: str
    data: dict[str, Any]
    config: dict[str, Any]
    enabled: bool
    on_error: str  # stop | continue | error_branch
    timeout_s: float | None
    retry: dict[str, Any]
    output_schema: dict[str, Any] | None
    label: str


@dataclass
class Graph:
    nodes: dict[str, Node]
    edges: list[Edge]
    out_edges: dict[str, list[Edge]] = field(default_factory=dict)
    in_edges: dict[str, list[Edge]] = field(default_factory=dict)
    topo: list[str] = field(default_factory=list)
    topo_index: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    _refs: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    _types: frozenset[str] | None = field(default=None, repr=False)

    @classmethod
    def from_definition(cls, definition: dict[str, Any]) -> Graph:
        nodes: dict[str, Node] = {}
        for raw in definition.get("nodes") or []:
            data = raw.get("data") or {}
            config = data.get("config") or {}
            on_error = data.get("on_error") or data.get("onError") or "stop"
            timeout = data.get("timeout_s")
            nodes[raw["id"]] = Node(
                id=raw["id"],
                type=raw["type"],
                data=data,
                config=config if isinstance(config, dict) else {},
                enabled=data.get("isEnabled", True) is not False,
                on_error=on_error if on_error in {"stop", "continue", "error_branch"} else "stop",
                timeout_s=float(timeout) if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) else None,
                retry=data["retry"] if isinstance(data.get("retry"), dict) else {},
                output_schema=data.get("output_schema") if isinstance(data.get("output_schema"), dict) else None,
                label=str(data.get("label") or raw["id"]),
            )
        edges: list[Edge] = []
        for raw in definition.get("edges") or []:
            edata = raw.get("data") if isinstance(raw.get("data"), dict) else {}
            cond = edata.get("condition") if edata else None
            edges.append(
                Edge(
                    id=str(raw["id"]),
                    source=raw["source"],
                    target=raw["target"],
                    source_handle=raw.get("sourceHandle"),
                    condition=cond if isinstance(cond, str) and cond.strip() else None,
                )
            )
        graph = cls(nodes=nodes, edges=edges, settings=dict(definition.get("settings") or {}))
        graph.out_edges = {nid: [] for nid in nodes}
        graph.in_edges = {nid: [] for nid in nodes}
        for edge in edges:
            graph.out_edges[edge.source].append(edge)
            graph.in_edges[edge.target].append(edge)
        graph.topo = topological_order(list(nodes), edges)
        graph.topo_index = {nid: i for i, nid in enumerate(graph.topo)}
        return graph

    def roots(self) -> list[str]:
        return [nid for nid in self.topo if not self.in_edges[nid]]

    def sinks(self) -> list[str]:
        return [nid for nid in self.topo if not self.out_edges[nid]]

    def successor_ids(self, node_id: str) -> list[str]:
        return list(dict.fromkeys(e.target for e in self.out_edges.get(node_id, [])))

    def predecessors(self, node_id: str) -> list[str]:
        return list(dict.fromkeys(e.source for e in self.in_edges[node_id]))

    def types(self) -> frozenset[str]:
        """The node types the graph uses (computed once per graph)."""
        if self._types is None:
            self._types = frozenset(node.type for node in self.nodes.values())
        return self._types

    def template_refs(self, node_id: str) -> frozenset[str]:
        """Upstream nodes this node's config templates name, computed once per graph (per-node hot path)."""
        refs = self._refs.get(node_id)
        if refs is None:
            from executions.engine.templates import node_references

            named = {nid for _, nid in node_references(self.nodes[node_id].config)}
            # Validation allows only upstream references; the ancestor walk runs only when there are any.
            refs = frozenset(named & self.ancestors(node_id)) if named else frozenset()
            self._refs[node_id] = refs
        return refs

    def ancestors(self, node_id: str) -> set[str]:
        seen: set[str] = set()
        stack = [node_id]
        while stack:
            for edge in self.in_edges[stack.pop()]:
                if edge.source not in seen:
                    seen.add(edge.source)
                    stack.append(edge.source)
        return seen


class CycleError(ValueError):
    def __init__(self, nodes: list[str]) -> None:
        super().__init__(f"cycle through {', '.join(nodes)}")
        self.nodes = nodes


def topological_order(node_ids: list[str], edges: list[Edge]) -> list[str]:
    """Kahn's algorithm, stable (ties broken by declaration order). Raises CycleError."""
    position = {nid: i for i, nid in enumerate(node_ids)}
    indeg = dict.fromkeys(node_ids, 0)
    out: dict[str, list[str]] = {nid: [] for nid in node_ids}
    for e in edges:
        if e.source in out and e.target in indeg:
            out[e.source].append(e.target)
            indeg[e.target] += 1
    heap = [(position[n], n) for n, d in indeg.items() if d == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, nid = heapq.heappop(heap)
        order.append(nid)
        for t in out[nid]:
            indeg[t] -= 1
            if indeg[t] == 0:
                heapq.heappush(heap, (position[t], t))
    if len(order) != len(node_ids):
        remaining = [n for n in node_ids if indeg[n] > 0]
        raise CycleError(find_cycle(remaining, edges) or remaining)
    return order


def find_cycle(candidates: list[str], edges: list[Edge]) -> list[str]:
    """One cycle among ``candidates`` (nodes left over by Kahn), as a node list."""
    cand = set(candidates)
    out: dict[str, list[str]] = {n: [] for n in candidates}
    for e in edges:
        if e.source in cand and e.target in cand:
            out[e.source].append(e.target)
    color: dict[str, int] = {}
    for start in candidates:
        if start in color:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:
            node, idx = stack.pop()
            if idx == 0:
                color[node] = 1
                path.append(node)
            succ = out[node]
            if idx < len(succ):
                stack.append((node, idx + 1))
                nxt = succ[idx]
                if color.get(nxt) == 1:
                    return path[path.index(nxt) :]
                if nxt not in color:
                    stack.append((nxt, 0))
            else:
                color[node] = 2
                path.pop()
    return []
