"""GET /api/circuits/ and POST /api/circuits/{key}/reset/ (staff only), and the admin pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from executions.models import CircuitBreaker, CircuitState
from executions.resilience.breaker import Breaker, BreakerConfig, Permit

pytestmark = pytest.mark.django_db


def open_breaker(key: str) -> CircuitBreaker:
    b = Breaker(BreakerConfig.from_settings())
    for _ in range(10):
        b.record(Permit(key, None), "failure", error="HTTP 503")
    return CircuitBreaker.objects.get(key=key)


def test_staff_list_circuits(staff_api: Any) -> None:
    open_breaker("https://api.example.com:443")
    res = staff_api.get("/api/circuits/")
    assert res.status_code == 200
    (item,) = res.json()["results"]
    assert item["key"] == "https://api.example.com:443" and item["state"] == "open"
    assert item["total_failures"] == 10 and item["last_failure"] == "HTTP 503"
    assert item["open_until"] is not None


def test_non_staff_and_anonymous_are_refused(api: Any, anon_api: Any) -> None:
    open_breaker("svc")
    assert api.get("/api/circuits/").status_code == 403
    assert api.post("/api/circuits/svc/reset/").status_code == 403
    assert anon_api.get("/api/circuits/").status_code in (401, 403)
    assert CircuitBreaker.objects.get(key="svc").state == CircuitState.OPEN


def test_reset_by_url_encoded_key(staff_api: Any) -> None:
    key = "https://api.example.com:443"
    open_breaker(key)
    res = staff_api.post(f"/api/circuits/{quote(key, safe='')}/reset/")
    assert res.status_code == 200, res.content
    assert res.json()["state"] == "closed"
    row = CircuitBreaker.objects.get(key=key)
    assert row.state == CircuitState.CLOSED and row.open_until is None and row.window == []


def test_reset_unknown_key_is_404(staff_api: Any) -> None:
    res = staff_api.post("/api/circuits/nope/reset/")
    assert res.status_code == 404
    assert res.json()["error"]["code"] == "not_found"


def test_admin_lists_and_resets(client: Any, staff_user: Any) -> None:
    row = open_breaker("svc-admin")
    client.force_login(staff_user)
    page = client.get("/admin/executions/circuitbreaker/")
    assert page.status_code == 200 and b"svc-admin" in page.content
    res = client.post("/admin/executions/circuitbreaker/", {"action": "reset_selected", "_selected_action": [row.pk]})
    assert res.status_code == 302
    assert CircuitBreaker.objects.get(key="svc-admin").state == CircuitState.CLOSED
    assert client.get("/admin/executions/servicepolicy/add/").status_code == 200
