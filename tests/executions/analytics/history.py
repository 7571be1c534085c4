"""A hand-built run history with known durations, failures, retries and deferrals.

Workflow "orders" (alice), 2026-11-01 and 2026-11-02 (UTC):

run  created            status               duration  fetch (HTTP_REQUEST)                          calc
r1   11-01 10:00        succeeded            100 ms    succeeded, 50 ms                              succeeded 5 ms
r2   11-01 10:30        succeeded            200 ms    succeeded, 60 ms, attempt 2, 250 ms rate_limited  succeeded 5 ms
r3   11-01 11:00        succeeded            300 ms    succeeded, 70 ms                              succeeded 5 ms
r4   11-02 09:00        failed               400 ms    failed http_5xx, 80 ms, attempt 3, 1500 ms circuit_open  cancelled
r5   11-02 12:00        partially_succeeded  1000 ms   failed http_5xx, 90 ms                        succeeded 5 ms
r6   11-02 13:00        running              -         running

Workflow "mailer" (alice), 11-02 08:00: one failed run, node "send" (EMAIL) failed "auth", 20 ms.
Workflow "private" (bob), 11-01 10:00: one succeeded run of 5 s (only staff sees it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from executions.models import NodeRun, Run
from tests.support.factories import make_workflow, node

D1 = datetime(2026, 11, 1, tzinfo=UTC)
D2 = datetime(2026, 11, 2, tzinfo=UTC)


def at(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day + timedelta(hours=hour, minutes=minute)


def make_run(wf: Any, owner: Any, created: datetime, status: str, duration_ms: int | None, nodes: list[dict[str, Any]]) -> Run:
    started = created + timedelta(seconds=1)
    finished = started + timedelta(milliseconds=duration_ms) if duration_ms is not None else None
    run = Run.objects.create(
        workflow=wf,
        version=wf.current_version,
        owner=owner,
        status=status,
        started_at=started,
        finished_at=finished,
        nodes_total=len(nodes),
    )
    Run.objects.filter(id=run.id).update(created_at=created)
    for i, spec in enumerate(nodes):
        n_started = started + timedelta(milliseconds=1)
        n_ms = spec.get("ms")
        NodeRun.objects.create(
            run=run,
            node_id=spec["id"],
            type=spec["type"],
            topo_index=i,
            status=spec["status"],
            attempt=spec.get("attempt", 1 if spec["status"] != "cancelled" else 0),
            deferred_ms=spec.get("deferred_ms", 0),
            defer_reason=spec.get("reason", ""),
            started_at=n_started if n_ms is not None or spec["status"] == "running" else None,
            finished_at=n_started + timedelta(milliseconds=n_ms) if n_ms is not None else None,
            error={"code": spec["code"], "message": "boom"} if spec.get("code") else None,
        )
    return Run.objects.get(id=run.id)


def fetch(status: str, ms: int | None, **extra: Any) -> dict[str, Any]:
    return {"id": "fetch", "type": "HTTP_REQUEST", "status": status, "ms": ms, **extra}


def calc(status: str = "succeeded", ms: int | None = 5) -> dict[str, Any]:
    return {"id": "calc", "type": "CALCULATOR", "status": status, "ms": ms}


def build(alice: Any, bob: Any) -> dict[str, Any]:
    definition = {"nodes": [node("fetch", "CALCULATOR", {"operation": "add", "a": 1, "b": 2})], "edges": []}
    orders = make_workflow(alice, definition, name="orders")
    mailer = make_workflow(alice, definition, name="mailer")
    private = make_workflow(bob, definition, name="private")
    make_run(orders, alice, at(D1, 10), "succeeded", 100, [fetch("succeeded", 50), calc()])
    make_run(
        orders, alice, at(D1, 10, 30), "succeeded", 200, [fetch("succeeded", 60, attempt=2, deferred_ms=250, reason="rate_limited"), calc()]
    )
    make_run(orders, alice, at(D1, 11), "succeeded", 300, [fetch("succeeded", 70), calc()])
    make_run(
        orders,
        alice,
        at(D2, 9),
        "failed",
        400,
        [fetch("failed", 80, attempt=3, deferred_ms=1500, reason="circuit_open", code="http_5xx"), calc("cancelled", None)],
    )
    make_run(orders, alice, at(D2, 12), "partially_succeeded", 1000, [fetch("failed", 90, code="http_5xx"), calc()])
    make_run(orders, alice, at(D2, 13), "running", None, [fetch("running", None)])
    make_run(mailer, alice, at(D2, 8), "failed", 20, [{"id": "send", "type": "EMAIL", "status": "failed", "ms": 20, "code": "auth"}])
    make_run(private, bob, at(D1, 10), "succeeded", 5000, [fetch("succeeded", 4000)])
    return {"orders": orders, "mailer": mailer, "private": private}
