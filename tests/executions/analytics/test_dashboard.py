"""Operator dashboard (/admin/analytics/): server-rendered SVG charts of the analytics figures, flags, caps."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client, override_settings

from tests.executions.analytics.history import build


@pytest.fixture
def history(user: Any, other_user: Any) -> dict[str, Any]:
    return build(user, other_user)


@pytest.fixture
def staff_client(staff_user: Any) -> Client:
    c = Client()
    c.force_login(staff_user)
    return c


def test_dashboard_charts_the_figures(staff_client: Client, history: dict[str, Any]) -> None:
    resp = staff_client.get("/admin/analytics/?from=2026-11-01&to=2026-11-02")
    assert resp.status_code == 200
    html = resp.content.decode()
    assert re.search(r'id="total-runs">8<', html)
    # Two day buckets in the runs chart: 11-01 has 4 runs (3 orders + 1 private), 11-02 has 4.
    runs_chart = html.split('id="chart-runs">')[1].split("</svg>")[0]
    # 11-01: one "succeeded" segment; 11-02: "partially_succeeded" and "failed" (the running run has no segment).
    assert runs_chart.startswith("<svg") and runs_chart.count("<rect") == 3
    assert "2026-11-01T00:00:00Z succeeded: 4" in runs_chart
    assert "2026-11-02T00:00:00Z failed: 2" in runs_chart and "2026-11-02T00:00:00Z partially_succeeded: 1" in runs_chart
    assert 'id="chart-p95"' in html and "<polyline" in html
    assert "http_5xx (2)" in html and "auth (1)" in html
    assert "circuit_open: 1500 ms" in html
    # No script, no CDN: everything is inline SVG.
    assert '<script src="http' not in html and "cdn" not in html.lower()


def test_dashboard_shows_flags_and_caps(staff_client: Client, db: Any) -> None:
    with override_settings(
        ZYRA_FEATURES={"parallel": False, "circuit_breaker": True, "rate_limit": True, "live_events": False, "webhook_signatures": True}
    ):
        html = staff_client.get("/admin/analytics/").content.decode()
    assert 'data-flag="parallel">off<' in html and 'data-flag="live_events">off<' in html
    assert 'data-flag="circuit_breaker">on<' in html and 'data-flag="webhook_signatures">on<' in html
    assert "ZYRA_MAX_OUTPUT_BYTES" in html and "DATA_UPLOAD_MAX_MEMORY_SIZE" in html


def test_bad_range_is_reported_not_a_500(staff_client: Client, db: Any) -> None:
    resp = staff_client.get("/admin/analytics/?from=soon&bucket=week")
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "/query/from" in html and "/query/bucket" in html


def test_names_are_escaped(staff_client: Client, user: Any, other_user: Any) -> None:
    h = build(user, other_user)
    h["orders"].name = "<script>alert(1)</script>"
    h["orders"].save(update_fields=["name"])
    html = staff_client.get("/admin/analytics/?from=2026-11-01&to=2026-11-02").content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_staff_only_and_linked_from_the_run_list(staff_client: Client, user: Any) -> None:
    anon = Client()
    resp = anon.get("/admin/analytics/")
    assert resp.status_code == 302 and "/admin/login/" in resp["Location"]
    plain = Client()
    plain.force_login(user)
    assert plain.get("/admin/analytics/").status_code == 302
    run_list = staff_client.get("/admin/executions/run/").content.decode()
    assert 'href="/admin/analytics/"' in run_list


def test_archived_days_are_listed_read_only(staff_client: Client, user: Any, other_user: Any) -> None:
    from datetime import UTC, datetime

    from executions import retention

    build(user, other_user)
    retention.runs_prune(older_than_days=1, pause_s=0, now=datetime(2026, 11, 4, 1, tzinfo=UTC))
    page = staff_client.get("/admin/executions/dailyworkflowstats/")
    assert page.status_code == 200 and "orders" in page.content.decode()
    assert staff_client.get("/admin/executions/dailyworkflowstats/add/").status_code == 403
