"""Live run page for operators: the run's DAG coloured by status over the WebSocket."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from executions.models import NodeRun, Run, RunEvent

NODE_W = 170
NODE_H = 54
GAP_X = 80
GAP_Y = 30


def dag_layout(definition: dict[str, Any]) -> dict[str, Any]:
    """Nodes with positions (the builder's, else one column per topological layer) and edges.

    Pure: used by the page and unit-testable without a database.
    """
    raw_nodes = [n for n in definition.get("nodes") or [] if isinstance(n, dict) and isinstance(n.get("id"), str)]
    raw_edges = [e for e in definition.get("edges") or [] if isinstance(e, dict)]
    ids = [n["id"] for n in raw_nodes]
    known = set(ids)
    preds: dict[str, list[str]] = {i: [] for i in ids}
    for e in raw_edges:
        if e.get("source") in known and e.get("target") in known:
            preds[e["target"]].append(e["source"])
    layer: dict[str, int] = {}

    def depth(node_id: str, trail: frozenset[str]) -> int:
        if node_id in layer:
            return layer[node_id]
        if node_id in trail:  # a cycle never reaches a run; stay finite anyway
            return 0
        value = 1 + max((depth(p, trail | {node_id}) for p in preds[node_id]), default=-1)
        layer[node_id] = value
        return value

    rows: dict[int, int] = {}
    nodes = []
    all_positioned = all(_position(n) is not None for n in raw_nodes)
    for n in raw_nodes:
        raw_data = n.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        pos = _position(n) if all_positioned else None
        if pos is None:
            col = depth(n["id"], frozenset())
            row = rows.get(col, 0)
            rows[col] = row + 1
            pos = (col * (NODE_W + GAP_X), row * (NODE_H + GAP_Y))
        nodes.append(
            {
                "id": n["id"],
                "type": str(n.get("type") or ""),
                "label": str(data.get("label") or n["id"]),
                "x": pos[0],
                "y": pos[1],
            }
        )
    edges = [
        {
            "id": str(e.get("id") or f"{e.get('source')}-{e.get('target')}"),
            "source": e["source"],
            "target": e["target"],
            "handle": e.get("sourceHandle") or "",
        }
        for e in raw_edges
        if e.get("source") in known and e.get("target") in known
    ]
    if nodes:
        min_x = min(n["x"] for n in nodes)
        min_y = min(n["y"] for n in nodes)
        for n in nodes:
            n["x"] = n["x"] - min_x + 20
            n["y"] = n["y"] - min_y + 20
    width = max((n["x"] for n in nodes), default=0) + NODE_W + 40
    height = max((n["y"] for n in nodes), default=0) + NODE_H + 40
    return {"nodes": nodes, "edges": edges, "width": width, "height": height, "node_w": NODE_W, "node_h": NODE_H}


def _position(node: dict[str, Any]) -> tuple[float, float] | None:
    pos = node.get("position")
    if isinstance(pos, dict):
        x, y = pos.get("x"), pos.get("y")
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            return float(x), float(y)
    return None


@login_required(login_url="admin:login")
def run_live(request: HttpRequest, run_id: UUID) -> HttpResponse:
    qs = Run.objects.select_related("workflow", "version")
    if not request.user.is_staff:
        qs = qs.filter(owner_id=request.user.pk)
    run = qs.filter(id=run_id).first()
    if run is None:
        raise Http404("Run not found.")
    # event_seq first, node runs second: replaying events after this seq
    # over a possibly newer snapshot converges on the latest state.
    after = run.event_seq
    node_runs = {nr["node_id"]: nr for nr in NodeRun.objects.filter(run_id=run.id).values("node_id", "status", "attempt")}
    # Edges taken/skipped so far (the page applies later ones live).
    edge_state: dict[str, str] = {}
    for data, type_ in (
        RunEvent.objects.filter(run_id=run.id, seq__lte=after, type__startswith="edge.").order_by("seq").values_list("data", "type")
    ):
        if isinstance(data, dict) and data.get("edge_id"):
            edge_state[str(data["edge_id"])] = type_.split(".", 1)[1]
    layout = dag_layout(run.version.definition or {})
    for e in layout["edges"]:
        e["state"] = edge_state.get(e["id"], "")
    for node in layout["nodes"]:
        nr = node_runs.get(node["id"])
        node["status"] = nr["status"] if nr else "pending"
        node["attempt"] = nr["attempt"] if nr else 0
    boot = {
        "run_id": str(run.id),
        "workflow_id": str(run.workflow_id),
        "status": run.status,
        "after": after,
        "progress": {"done": run.nodes_done, "total": run.nodes_total},
        "ws_path": f"/ws/runs/{run.id}/",
        "api_path": f"/api/runs/{run.id}/",
        "layout": layout,
    }
    admin_url = reverse("admin:executions_run_change", args=[run.id]) if request.user.is_staff else ""
    return render(request, "executions/run_live.html", {"run": run, "boot": boot, "admin_url": admin_url})


def live_js(request: HttpRequest) -> HttpResponse:
    """The page's script, served by Django itself so the page works under plain
    daphne/uvicorn with no static-file server (the file also ships via collectstatic)."""
    from pathlib import Path

    path = Path(__file__).resolve().parent / "static" / "executions" / "live.js"
    response = HttpResponse(path.read_bytes(), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    return response
