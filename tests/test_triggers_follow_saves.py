"""Workflow saves keep webhook endpoints and schedules in line with the current version."""

from __future__ import annotations

from typing import Any

from tests.support.factories import edge, node
from triggers.models import Schedule, WebhookEndpoint


def _definition(trigger: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": [node("t", trigger, config), node("m", "MERGE")], "edges": [edge("t", "m")]}


def test_save_creates_updates_and_archive_stops_triggers(api: Any, db: Any) -> None:
    resp = api.post("/api/workflows/", {"name": "hooked", "definition": _definition("WEBHOOK", {"signing": "unsigned"})}, format="json")
    assert resp.status_code == 201, resp.content
    wf_id = resp.json()["id"]
    assert WebhookEndpoint.objects.filter(workflow_id=wf_id, is_active=True).count() == 1
    assert not Schedule.objects.filter(workflow_id=wf_id).exists()

    resp = api.patch(f"/api/workflows/{wf_id}/", {"definition": _definition("SCHEDULE", {"interval_s": 60})}, format="json")
    assert resp.status_code == 200, resp.content
    assert WebhookEndpoint.objects.filter(workflow_id=wf_id, is_active=True).count() == 0
    assert Schedule.objects.filter(workflow_id=wf_id, enabled=True).count() == 1

    assert api.delete(f"/api/workflows/{wf_id}/").status_code == 204
    assert Schedule.objects.filter(workflow_id=wf_id, enabled=True).count() == 0
