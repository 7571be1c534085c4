"""Run admin (filters, duration, inlines, live link) and the live page's access and contents."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from django.test import Client
from django.utils import timezone

from executions.events import event_record
from executions.models import NodeRun, Run
from executions.web_views import dag_layout
from tests.support.factories import edge, make_workflow, node


def make_finished_run(owner: Any) -> Run:
    definition = {"nodes": [node("fetch", "MANUAL"), node("check", "MERGE")], "edges": [edge("fetch", "check")]}
    definition["nodes"][1]["position"] = {"x": 300, "y": 40}
    wf = make_workflow(owner, definition, name="orders")
    now = timezone.now()
    run = Run.objects.create(
        workflow=wf,
        version=wf.versions.get(),
        owner=owner,
        status="failed",
        nodes_total=2,
        nodes_done=2,
        started_at=now - timedelta(milliseconds=1500),
        finished_at=now,
    )
    NodeRun.objects.create(run=run, node_id="fetch", type="MANUAL", status="succeeded", attempt=1, topo_index=0)
    NodeRun.objects.create(
        run=run,
        node_id="check",
        type="MERGE",
        status="failed",
        attempt=3,
        topo_index=1,
        error={"code": "http_5xx", "message": "upstream 503"},
    )
    event_record(run_id=run.id, type="edge.taken", node_id="check", data={"edge_id": "fetch->check", "source": "fetch", "target": "check"})
    event_record(run_id=run.id, type="node.failed", node_id="check", data={"status": "failed", "attempt": 3})
    return run


def staff_client(staff_user: Any) -> Client:
    c = Client()
    c.force_login(staff_user)
    return c


def test_run_admin_lists_filters_and_links_the_live_page(db: Any, user: Any, staff_user: Any) -> None:
    run = make_finished_run(user)
    c = staff_client(staff_user)
    page = c.get("/admin/executions/run/").content.decode()
    assert str(run.id) in page and "1.5 s" in page and f"/runs/{run.id}/live/" in page
    assert str(run.id) in c.get("/admin/executions/run/?status__exact=failed").content.decode()
    assert str(run.id) not in c.get("/admin/executions/run/?status__exact=succeeded").content.decode()
    assert str(run.id) in c.get(f"/admin/executions/run/?workflow__id__exact={run.workflow_id}").content.decode()
    assert c.get("/admin/executions/run/?created_at__gte=2000-01-01+00:00:00%2B00:00").status_code == 200

    detail = c.get(f"/admin/executions/run/{run.id}/change/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert 'id="run-live-link"' in html and f"/runs/{run.id}/live/" in html
    assert "http_5xx" in html  # node runs inline
    assert "node.failed" in html and "event log" in html.lower()  # event log inline
    assert 'name="_save"' not in html  # a read-only detail view, no save button
    # Read-only: nothing can be added or deleted by hand.
    assert c.get("/admin/executions/run/add/").status_code == 403
    assert c.get("/admin/executions/noderun/").status_code == 200
    assert c.get("/admin/executions/runevent/").status_code == 200
    assert c.get("/admin/executions/runevent/add/").status_code == 403
    assert c.post(f"/admin/executions/run/{run.id}/delete/", {"post": "yes"}).status_code == 403
    assert Run.objects.filter(id=run.id).exists()


def test_live_page_is_for_owner_and_staff_only(db: Any, user: Any, other_user: Any, staff_user: Any) -> None:
    run = make_finished_run(user)
    url = f"/runs/{run.id}/live/"
    anon = Client().get(url)
    assert anon.status_code == 302 and "/admin/login/" in anon["Location"]
    other = Client()
    other.force_login(other_user)
    assert other.get(url).status_code == 404

    owner = Client()
    owner.force_login(user)
    resp = owner.get(url)
    assert resp.status_code == 200
    html = resp.content.decode()
    found = re.search(r'<script id="zyra-run-boot" type="application/json">(.*?)</script>', html, re.S)
    assert found is not None
    boot = json.loads(found.group(1))
    assert boot["run_id"] == str(run.id) and boot["after"] == 2 and boot["ws_path"] == f"/ws/runs/{run.id}/"
    nodes = {n["id"]: n for n in boot["layout"]["nodes"]}
    assert nodes["check"]["status"] == "failed" and nodes["check"]["attempt"] == 3
    assert boot["layout"]["edges"] == [{"id": "fetch->check", "source": "fetch", "target": "check", "handle": "", "state": "taken"}]
    assert staff_client(staff_user).get(url).status_code == 200
    js = owner.get("/runs/live.js")
    assert js.status_code == 200 and b"new WebSocket" in js.content


def test_layout_uses_builder_positions_else_topological_columns() -> None:
    positioned = dag_layout(
        {
            "nodes": [{"id": "a", "position": {"x": 100, "y": 50}}, {"id": "b", "position": {"x": 400, "y": 50}}],
            "edges": [{"source": "a", "target": "b"}],
        }
    )
    xs = {n["id"]: (n["x"], n["y"]) for n in positioned["nodes"]}
    assert xs == {"a": (20, 20), "b": (320, 20)}

    layered = dag_layout(
        {
            "nodes": [{"id": "c"}, {"id": "a"}, {"id": "b"}, {"id": "b2"}],
            "edges": [{"source": "a", "target": "b"}, {"source": "a", "target": "b2"}, {"source": "b", "target": "c"}],
        }
    )
    pos = {n["id"]: (n["x"], n["y"]) for n in layered["nodes"]}
    assert pos["a"][0] < pos["b"][0] == pos["b2"][0] < pos["c"][0]
    assert pos["b"][1] != pos["b2"][1]
    assert layered["width"] > pos["c"][0]


def test_event_log_inline_is_capped_and_links_the_full_log(db: Any, user: Any, staff_user: Any) -> None:
    from executions.admin_runs import EVENT_LOG_INLINE_LIMIT
    from executions.models import RunEvent

    run = make_finished_run(user)  # 2 events
    now = timezone.now()
    extra = EVENT_LOG_INLINE_LIMIT + 98
    RunEvent.objects.bulk_create(
        [RunEvent(run=run, seq=i, type="node.started", node_id=f"marker{i}x", ts=now, data={}) for i in range(3, 3 + extra)]
    )
    Run.objects.filter(id=run.id).update(event_seq=2 + extra)
    c = staff_client(staff_user)
    html = c.get(f"/admin/executions/run/{run.id}/change/").content.decode()
    last = 2 + extra
    assert f"marker{last}x" in html and f"marker{last - EVENT_LOG_INLINE_LIMIT + 1}x" in html
    assert f"marker{last - EVENT_LOG_INLINE_LIMIT}x" not in html
    full = f"/admin/executions/runevent/?run__id__exact={run.id}"
    assert full.replace("&", "&amp;") in html or full in html
    listing = c.get(full)
    assert listing.status_code == 200
    assert "marker3x" in listing.content.decode()


def test_admin_actions_cancel_through_the_engine_service(db: Any, user: Any, staff_user: Any) -> None:
    from tests.executions.monitoring.test_ws_auth import make_run

    running = make_run(user, status="running")
    finished = make_finished_run(user)
    c = staff_client(staff_user)
    resp = c.post("/admin/executions/run/", {"action": "cancel_runs", "_selected_action": [str(running.id), str(finished.id)]}, follow=True)
    assert resp.status_code == 200
    running.refresh_from_db()
    finished.refresh_from_db()
    assert running.status == "cancelled" and finished.status == "failed"
    assert list(running.events.values_list("type", flat=True)) == ["run.cancelled"]
    shown = [str(m) for m in resp.context["messages"]]
    assert shown == ["Cancel: 1 run(s).", f"Cancel refused for {finished.id}: the run is already failed."]
