"""/api/secrets/: values are write-only; other users' secrets are 404; bad input is a clear 400."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from secrets_vault import services
from secrets_vault.models import Secret

VALUE = "xoxb-slack-token-0123456789abcdef"
META = {"id", "name", "description", "fingerprint", "key_id", "created_at", "updated_at", "last_used_at"}


def _no_value(resp: Any, value: str = VALUE) -> None:
    body = resp.content.decode()
    assert value not in body
    assert "ciphertext" not in body and "wrapped_key" not in body


def _error(resp: Any, status: int, code: str, path: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.content
    body = resp.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    if path is not None:
        assert (path, code) in [(d["path"], d["code"]) for d in body["error"]["details"]], body
    else:
        assert body["error"]["code"] == code, body
    return body


@pytest.mark.django_db
def test_crud_never_returns_the_value(api: APIClient, user: Any) -> None:
    r = api.post("/api/secrets/", {"name": "SLACK", "value": VALUE, "description": "bot"}, format="json")
    assert r.status_code == 201, r.content
    assert set(r.json()) == META and r.json()["name"] == "SLACK" and len(r.json()["fingerprint"]) == 16
    _no_value(r)
    sid = r.json()["id"]
    fp = r.json()["fingerprint"]
    for url in ("/api/secrets/", "/api/secrets/SLACK/", f"/api/secrets/{sid}/"):
        resp = api.get(url)
        assert resp.status_code == 200
        _no_value(resp)
    assert api.get("/api/secrets/").json()["results"][0]["name"] == "SLACK"
    r = api.patch("/api/secrets/SLACK/", {"description": "new"}, format="json")
    assert r.status_code == 200 and r.json()["description"] == "new" and r.json()["fingerprint"] == fp
    r = api.put(f"/api/secrets/{sid}/", {"name": "SLACK2", "value": "rotated-value-9999"}, format="json")
    assert r.status_code == 200 and r.json()["name"] == "SLACK2" and r.json()["fingerprint"] != fp
    _no_value(r, "rotated-value-9999")
    assert services.secret_resolve(owner_id=user.pk, name="SLACK2") == "rotated-value-9999"
    assert api.delete("/api/secrets/SLACK2/").status_code == 204
    assert not Secret.objects.exists()
    _error(api.get("/api/secrets/SLACK2/"), 404, "not_found")


@pytest.mark.django_db
def test_other_users_secret_is_404(api: APIClient, other_api: APIClient, anon_api: APIClient) -> None:
    sid = api.post("/api/secrets/", {"name": "MINE", "value": VALUE}, format="json").json()["id"]
    for ref in ("MINE", str(sid)):
        _error(other_api.get(f"/api/secrets/{ref}/"), 404, "not_found")
        _error(other_api.patch(f"/api/secrets/{ref}/", {"value": "hijacked-value"}, format="json"), 404, "not_found")
        _error(other_api.delete(f"/api/secrets/{ref}/"), 404, "not_found")
    assert other_api.get("/api/secrets/").json()["results"] == []
    assert anon_api.get("/api/secrets/").status_code in (401, 403)
    assert api.get("/api/secrets/MINE/").status_code == 200
    # The other user can use the same name for their own secret.
    assert other_api.post("/api/secrets/", {"name": "MINE", "value": "bob-value-123"}, format="json").status_code == 201


@pytest.mark.django_db
def test_hostile_and_bad_input(api: APIClient) -> None:
    def post(body: Any) -> Any:
        return api.post("/api/secrets/", body, format="json")

    _error(post({"name": "A"}), 400, "required", "/value")
    _error(post({"value": VALUE}), 400, "required", "/name")
    _error(post({"name": "A", "value": VALUE, "ciphertext": "x"}), 400, "unknown_field", "/ciphertext")
    _error(post({"name": "../etc", "value": VALUE}), 400, "invalid_name", "/name")
    _error(post({"name": "A", "value": {"$gt": ""}}), 400, "invalid_type", "/value")
    _error(post({"name": "A", "value": "a" * 70000}), 400, "too_long", "/value")
    _error(post({"name": "A", "value": VALUE, "description": 5}), 400, "invalid_type", "/description")
    _error(post([1, 2]), 400, "invalid_type", "")
    _error(api.post("/api/secrets/", "{not json", content_type="application/json"), 400, "malformed_json")
    _error(api.post("/api/secrets/", "name=A", content_type="application/x-www-form-urlencoded"), 415, "unsupported_media_type")
    # Lone surrogate in JSON.
    raw = '{"name": "A", "value": "abc\\ud800def"}'
    r = api.post("/api/secrets/", raw, content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]["details"][0]["path"] == "/value", r.content
    assert post({"name": "A", "value": VALUE}).status_code == 201
    r = post({"name": "A", "value": "different-value"})
    _error(r, 409, "duplicate_name")
    _no_value(r, "different-value")
    _error(api.patch("/api/secrets/A/", {"value": None}, format="json"), 400, "null", "/value")
    _error(api.put("/api/secrets/A/", {"name": "A"}, format="json"), 400, "required", "/value")
    _error(api.get("/api/secrets/" + "9" * 40 + "/"), 404, "not_found")
    _error(api.get("/api/secrets/%00/"), 404, "not_found")
    assert Secret.objects.count() == 1


@pytest.mark.django_db
def test_oversized_body_is_rejected_without_500(api: APIClient) -> None:
    body = json.dumps({"name": "BIG", "value": "x" * (6 * 1024 * 1024)})
    r = api.post("/api/secrets/", body, content_type="application/json")
    assert 400 <= r.status_code < 500
    assert not Secret.objects.exists()


@pytest.mark.django_db
def test_admin_shows_metadata_only(client: Any, staff_user: Any, user: Any) -> None:
    s = services.secret_create(owner=user, name="ADMIN_SEEN", value=VALUE)
    client.force_login(staff_user)
    for url in ("/admin/secrets_vault/secret/", f"/admin/secrets_vault/secret/{s.pk}/change/"):
        r = client.get(url)
        assert r.status_code == 200
        page = r.content.decode()
        assert "ADMIN_SEEN" in page and VALUE not in page and "ciphertext" not in page.lower()
    assert client.get("/admin/secrets_vault/secret/add/").status_code == 403


@pytest.mark.django_db
def test_admin_description_edit_keeps_the_value(client: Any, staff_user: Any, user: Any) -> None:
    s = services.secret_create(owner=user, name="ADMIN_EDIT", value=VALUE)
    before = (bytes(s.ciphertext), bytes(s.wrapped_key), s.key_id)
    client.force_login(staff_user)
    r = client.post(f"/admin/secrets_vault/secret/{s.pk}/change/", {"description": "edited in admin"})
    assert r.status_code == 302, r.content[:500]
    s.refresh_from_db()
    assert s.description == "edited in admin"
    assert (bytes(s.ciphertext), bytes(s.wrapped_key), s.key_id) == before
    assert services.secret_resolve(owner_id=user.pk, name="ADMIN_EDIT") == VALUE
