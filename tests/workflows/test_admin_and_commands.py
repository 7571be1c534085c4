"""The admin pages for workflows and the create_user_token command."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.workflows.conftest import load_fixture
from workflows.models import Workflow
from workflows.services import workflow_create, workflow_update

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored(user: Any) -> Workflow:
    wf = workflow_create(owner=user, name="Website monitor", definition=load_fixture("health_monitor"), tags=["ops"])
    changed = load_fixture("health_monitor")
    changed["nodes"][0]["data"]["config"]["cron"] = "*/10 * * * *"
    return workflow_update(workflow=wf, user=user, definition=changed)


def test_admin_change_page_shows_versions_and_pretty_definition(staff_user: Any, stored: Workflow) -> None:
    client = Client()
    client.force_login(staff_user)
    page = client.get(f"/admin/workflows/workflow/{stored.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "*/10 * * * *" in html and "<pre" in html
    # pretty-printed (indented) JSON, HTML-escaped
    assert "\n        &quot;blockType&quot;: &quot;HTTP_REQUEST&quot;" in html
    # both versions inline, newest first
    v2, v1 = (stored.versions.get(number=n).checksum for n in (2, 1))
    assert v1 in html and v2 in html and html.index(v2) < html.index(v1)


def test_admin_changelist_search_and_filter(staff_user: Any, stored: Workflow, user: Any) -> None:
    workflow_create(owner=user, name="Invoice approval", definition=load_fixture("approval_flow"))
    client = Client()
    client.force_login(staff_user)
    found = client.get("/admin/workflows/workflow/?q=monitor").content.decode()
    assert "Website monitor" in found and "Invoice approval" not in found
    active = client.get("/admin/workflows/workflow/?is_active__exact=1").content.decode()
    assert "Website monitor" in active and "Invoice approval" in active
    versions = client.get(f"/admin/workflows/workflowversion/?q={stored.pk}")
    assert versions.status_code == 200


def test_admin_versions_are_read_only(staff_user: Any, stored: Workflow) -> None:
    client = Client()
    client.force_login(staff_user)
    version = stored.versions.get(number=1)
    page = client.get(f"/admin/workflows/workflowversion/{version.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert client.get(f"/admin/workflows/workflowversion/{version.pk}/delete/").status_code == 403


def test_admin_archive_action(staff_user: Any, stored: Workflow) -> None:
    client = Client()
    client.force_login(staff_user)
    resp = client.post("/admin/workflows/workflow/", {"action": "archive", "_selected_action": [str(stored.pk)]})
    assert resp.status_code == 302
    stored.refresh_from_db()
    assert stored.is_active is False and stored.archived_at is not None


def test_create_user_token_creates_user_and_prints_a_working_token() -> None:
    out = io.StringIO()
    call_command("create_user_token", "carol", "--staff", "--password", "pw-carol-123", stdout=out, stderr=io.StringIO())
    key = out.getvalue().strip()
    user = get_user_model().objects.get(username="carol")
    assert user.is_staff and user.is_superuser and user.check_password("pw-carol-123")
    assert Token.objects.get(user=user).key == key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/workflows/").status_code == 200
    # again: same user, same token
    out2 = io.StringIO()
    call_command("create_user_token", "carol", stdout=out2, stderr=io.StringIO())
    assert out2.getvalue().strip() == key
    # --reset issues a new one and the old one stops working
    out3 = io.StringIO()
    call_command("create_user_token", "carol", "--reset", stdout=out3, stderr=io.StringIO())
    assert out3.getvalue().strip() != key
    assert client.get("/api/workflows/").status_code == 401


def test_create_user_token_without_password_makes_unusable_password() -> None:
    call_command("create_user_token", "dave", stdout=io.StringIO(), stderr=io.StringIO())
    user = get_user_model().objects.get(username="dave")
    assert not user.has_usable_password() and not user.is_staff
