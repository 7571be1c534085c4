"""Object-level security: another user's workflow does not exist for you."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest
from rest_framework.test import APIClient

from tests.workflows.conftest import load_fixture
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices_workflow(api: APIClient) -> str:
    resp = api.post("/api/workflows/", {"name": "alice's", "definition": load_fixture("linear_chain")}, format="json")
    assert resp.status_code == 201
    wid: str = resp.json()["id"]
    return wid


def endpoints(wid: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    changed = copy.deepcopy(load_fixture("linear_chain"))
    changed["nodes"][3]["data"]["config"]["seconds"] = 9
    return [
        ("GET", f"/api/workflows/{wid}/", None),
        ("PUT", f"/api/workflows/{wid}/", {"name": "bob was here", "definition": changed}),
        ("PATCH", f"/api/workflows/{wid}/", {"name": "bob was here"}),
        ("PATCH", f"/api/workflows/{wid}/", {"definition": {"nodes": []}}),
        ("GET", f"/api/workflows/{wid}/versions/", None),
        ("GET", f"/api/workflows/{wid}/versions/1/", None),
        ("POST", f"/api/workflows/{wid}/runs/", {"inputs": {}}),
        ("DELETE", f"/api/workflows/{wid}/", None),
    ]


def send(client: APIClient, method: str, url: str, body: dict[str, Any] | None) -> Any:
    if body is None:
        return client.generic(method, url)
    return getattr(client, method.lower())(url, body, format="json")


def test_other_user_gets_404_everywhere_and_changes_nothing(other_api: APIClient, api: APIClient, alices_workflow: str) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for method, url, body in endpoints(alices_workflow):
        resp = send(other_api, method, url, body)
        assert resp.status_code == 404, (method, url, resp.status_code, resp.content[:200])
        assert resp.json()["error"]["code"] == "not_found"
        # indistinguishable from an id that does not exist at all
        ghost_url = url.replace(alices_workflow, missing)
        ghost = send(other_api, method, ghost_url, body)
        assert (ghost.status_code, ghost.json()) == (resp.status_code, resp.json())
    assert other_api.get("/api/workflows/").json()["count"] == 0
    wf = Workflow.objects.get(pk=alices_workflow)
    assert wf.name == "alice's" and wf.is_active and wf.archived_at is None
    assert WorkflowVersion.objects.filter(workflow=wf).count() == 1
    assert api.get(f"/api/workflows/{alices_workflow}/").status_code == 200
    assert api.get("/api/workflows/").json()["count"] == 1


def test_no_credentials_is_401(anon_api: APIClient, alices_workflow: str) -> None:
    urls = [
        ("GET", "/api/workflows/"),
        ("POST", "/api/workflows/"),
        ("POST", "/api/workflows/validate/"),
        ("GET", "/api/node-types/"),
        ("GET", "/api/workflows/schema/"),
        *[(m, u) for m, u, _ in endpoints(alices_workflow)],
    ]
    for method, url in urls:
        resp = anon_api.generic(method, url, data="{}", content_type="application/json")
        assert resp.status_code == 401, (method, url)
        assert resp.json()["error"]["code"] == "not_authenticated"
        assert resp.headers.get("WWW-Authenticate", "").startswith("Token")


def test_bad_token_is_401(alices_workflow: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    resp = client.get(f"/api/workflows/{alices_workflow}/")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize(
    "key",
    ["not-a-real-token", "' OR '1'='1", "x" * 5000, "тест-🔑", "abc%00def", "a\x00b"],
    ids=["unknown", "sql", "huge", "unicode", "percent", "nul"],
)
def test_hostile_tokens_are_401_in_the_error_shape(alices_workflow: str, key: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    resp = client.get(f"/api/workflows/{alices_workflow}/")
    assert resp.status_code == 401, resp.content
    assert resp.json()["error"]["code"] == "authentication_failed"


def test_a_token_authenticates_its_user_and_an_inactive_users_token_is_refused(user: Any, alices_workflow: str) -> None:
    """The token lookup (zyra/auth.py: one fixed statement instead of DRF's ORM query) answers as DRF does."""
    from rest_framework.authtoken.models import Token

    from zyra.auth import FastTokenAuthentication, token_user

    token = Token.objects.get(user=user)
    found = token_user(token.key)
    assert found is not None
    got_user, got_token = found
    assert (got_user.pk, got_user.username, got_user.is_active, got_user.is_staff) == (user.pk, user.username, True, user.is_staff)
    assert (got_token.key, got_token.user_id, got_token.created) == (token.key, user.pk, token.created)
    assert got_token.user is got_user
    assert token_user(token.key.upper()) is None and token_user("") is None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get(f"/api/workflows/{alices_workflow}/").status_code == 200
    user.is_active = False
    user.save(update_fields=["is_active"])
    resp = client.get(f"/api/workflows/{alices_workflow}/")
    assert resp.status_code == 401
    assert resp.json()["error"]["message"] == "User inactive or deleted."
    from django.conf import settings

    classes = cast(list[str], settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"])
    assert classes[0] == f"{FastTokenAuthentication.__module__}.FastTokenAuthentication"


def test_session_auth_works_for_the_owner(user: Any, alices_workflow: str) -> None:
    client = APIClient()
    client.force_login(user)
    assert client.get(f"/api/workflows/{alices_workflow}/").status_code == 200
