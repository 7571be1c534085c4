"""Factories for workflows and runs (direct ORM; the API is tested on its own)."""

from __future__ import annotations

import time
from typing import Any

from workflows.definition import checksum, normalize
from workflows.models import Workflow, WorkflowVersion


def make_workflow(owner: Any, definition: dict[str, Any], name: str = "wf", **fields: Any) -> Workflow:
    wf = Workflow.objects.create(owner=owner, name=name, **fields)
    canonical = normalize(definition)
    version = WorkflowVersion.objects.create(
        workflow=wf, number=1, definition=canonical, submitted=definition, checksum=checksum(canonical), created_by=owner
    )
    wf.current_version = version
    wf.save(update_fields=["current_version"])
    return wf


def node(node_id: str, type_: str, config: dict[str, Any] | None = None, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "position": {"x": 0, "y": 0}, "data": {"label": node_id, "config": config or {}, **data}}


def edge(source: str, target: str, handle: str | None = None, **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"id": f"{source}->{target}{'-' + handle if handle else ''}", "source": source, "target": target}
    if handle:
        e["sourceHandle"] = handle
    e.update(extra)
    return e


def http(node_id: str, url: str, **data: Any) -> dict[str, Any]:
    return node(node_id, "HTTP_REQUEST", {"url": url, "method": "GET"}, **data)


def wait_run(run_id: Any, timeout: float = 30.0) -> Any:
    from executions.models import Run

    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.get(id=run_id)
        if run.is_terminal:
            return run
        if time.monotonic() > deadline:
            statuses = dict(run.node_runs.values_list("node_id", "status"))
            raise AssertionError(f"run {run_id} still {run.status} after {timeout}s: {statuses}")
        time.sleep(0.05)


def statuses(run: Any) -> dict[str, str]:
    return dict(run.node_runs.values_list("node_id", "status"))


def transform(node_id: str, **data: Any) -> dict[str, Any]:
    """A cpu-queue node that always goes to a worker: DATA_TRANSFORM is not instant (its work may be
    large), unlike CALCULATOR, CONDITION, SWITCH and MERGE, which run where they become ready."""
    return node(node_id, "DATA_TRANSFORM", {"source": [1, 2], "operations": [{"op": "limit", "count": 1}]}, **data)
