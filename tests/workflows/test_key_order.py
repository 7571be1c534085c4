"""The definition comes back with the builder's own key order (jsonb would sort keys)."""

from __future__ import annotations

import json
from typing import Any


def test_definition_round_trips_byte_for_byte(api: Any) -> None:
    body = (
        '{"name": "order", "definition": {"nodes": [{"id": "z", "type": "MANUAL", "position": {"y": 2, "x": 1},'
        ' "data": {"zeta": 1, "alpha": 2, "config": {}}}], "edges": [], "settings": {"timeout_s": 60}}}'
    )
    resp = api.post("/api/workflows/", body, content_type="application/json")
    assert resp.status_code == 201, resp.content
    sent = json.dumps(json.loads(body)["definition"])
    assert json.dumps(resp.json()["definition"]) == sent
    again = api.get(f"/api/workflows/{resp.json()['id']}/")
    assert json.dumps(again.json()["definition"]) == sent
