"""The three builder fixtures of the foundation issue, saved over the API and run end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from executions.models import NodeRun
from tests.support.factories import statuses, wait_run
from tests.support.servers import LocalServer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _load(name: str, server: LocalServer) -> dict[str, Any]:
    text = (FIXTURES / f"{name}.json").read_text()
    for external in ("https://api.example.com", "https://hooks.example.com", "https://example.com"):
        text = text.replace(external, server.base)
    return json.loads(text)


def _save_and_run(api: Any, definition: dict[str, Any], inputs: dict[str, Any]) -> Any:
    resp = api.post("/api/workflows/", {"name": "fixture", "definition": definition}, format="json")
    assert resp.status_code == 201, resp.content
    assert resp.json()["definition"] == definition  # returned exactly as submitted
    run = api.post(f"/api/workflows/{resp.json()['id']}/runs/", {"inputs": inputs}, format="json")
    assert run.status_code == 202, run.content
    return wait_run(run.json()["id"], timeout=60)


def test_linear_chain_runs_end_to_end(worker: Any, api: Any, server: LocalServer, smtp_server: Any) -> None:
    server.responses("/orders/42", [(200, {"id": 42, "price": 10.0})])
    run = _save_and_run(api, _load("linear_chain", server), {"order_id": 42})
    assert run.status == "succeeded", statuses(run)
    assert cast(dict[str, Any], NodeRun.objects.get(run=run, node_id="total").output)["result"] == 12.0
    assert "Your order 42" in smtp_server.subjects()
    wait = NodeRun.objects.get(run=run, node_id="wait")
    assert wait.duration_ms is not None and wait.duration_ms >= 900


def test_health_monitor_takes_the_true_then_the_false_branch(worker: Any, api: Any, server: LocalServer, smtp_server: Any) -> None:
    definition = _load("health_monitor", server)
    server.responses("/", [(200, {"ok": True}), (503, {"down": True})])
    up = _save_and_run(api, definition, {})
    assert statuses(up) == {
        "schedule-1": "succeeded",
        "http-1": "succeeded",
        "condition-1": "succeeded",
        "email-up": "succeeded",
        "email-down": "skipped",
    }
    resp = api.get("/api/workflows/")
    wf_id = resp.json()["results"][0]["id"]
    down = api.post(f"/api/workflows/{wf_id}/runs/", {"inputs": {}}, format="json")
    down = wait_run(down.json()["id"], timeout=60)
    assert statuses(down)["email-down"] == "succeeded" and statuses(down)["email-up"] == "skipped"
    subjects = smtp_server.subjects()
    assert subjects.count("Website is up") >= 1 and subjects.count("Website is DOWN") >= 1


def test_approval_flow_branches_merge_into_one_email(worker: Any, api: Any, server: LocalServer, smtp_server: Any) -> None:
    definition = _load("approval_flow", server)
    big = _save_and_run(api, definition, {"amount": 5000, "employee": "Ada", "email": "ada@example.com"})
    assert big.status == "succeeded", statuses(big)
    st = statuses(big)
    assert st["notify"] == "succeeded" and st["auto"] == "skipped" and st["receipt"] == "succeeded"
    assert server.count("/approvals") == 1
    wf_id = big.workflow_id
    small = api.post(
        f"/api/workflows/{wf_id}/runs/", {"inputs": {"amount": 50, "employee": "Bo", "email": "bo@example.com"}}, format="json"
    )
    small = wait_run(small.json()["id"], timeout=60)
    st = statuses(small)
    assert st["notify"] == "skipped" and st["auto"] == "succeeded" and st["receipt"] == "succeeded"
    assert server.count("/approvals") == 1  # the untaken branch never ran
    receipts = [m for m in smtp_server.messages if m["subject"] == "Your expense"]
    assert sorted(r["to"][0] for r in receipts)[-2:] == ["ada@example.com", "bo@example.com"]
    assert NodeRun.objects.filter(run=small, node_id="receipt").get().attempt == 1
