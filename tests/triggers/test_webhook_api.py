"""/api/webhooks/ and /api/schedules/: owners only; token regeneration; signing secret rotation."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from executions.models import Run
from tests.support.factories import make_workflow, node
from tests.triggers.conftest import payload, post, standard_headers, webhook_workflow
from triggers import services
from triggers.models import SigningScheme, WebhookEndpoint
from workflows.definition import checksum, normalize
from workflows.models import WorkflowVersion


@pytest.mark.django_db
def test_endpoint_follows_versions(user: Any) -> None:
    wf = webhook_workflow(user, signing="github", max_body_bytes=1000, rate_limit_per_s=7)
    [ep] = services.webhook_endpoint_ensure(wf)
    assert (ep.signing_scheme, ep.max_body_bytes, ep.rate_limit_per_s, ep.is_active) == ("github", 1000, 7, True)
    assert len(ep.token) >= 43
    token = ep.token
    # A new version without the node deactivates; bringing it back restores the same URL.
    for nodes, active in (([node("m", "MANUAL")], False), ([node("hook", "WEBHOOK", {"signing": "github"})], True)):
        canonical = normalize({"nodes": nodes, "edges": []})
        v = WorkflowVersion.objects.create(
            workflow=wf, number=wf.versions.count() + 1, definition=canonical, submitted=canonical, checksum=checksum(canonical)
        )
        wf.current_version = v
        wf.save()
        services.triggers_sync(wf)
        ep.refresh_from_db()
        assert ep.is_active is active and ep.token == token
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.django_db
def test_api_owner_only_regenerate_and_secrets(api: Any, other_api: Any, user: Any, client: Client) -> None:
    [ep] = services.webhook_endpoint_ensure(webhook_workflow(user))
    r = api.get("/api/webhooks/")
    assert r.status_code == 200 and [e["id"] for e in r.json()["results"]] == [str(ep.pk)]
    assert r.json()["results"][0]["url"].endswith(f"/hooks/{ep.token}/")
    assert other_api.get("/api/webhooks/").json()["results"] == []
    assert api.get(f"/api/webhooks/?workflow={ep.workflow_id}").json()["count"] == 1
    assert api.get("/api/webhooks/?workflow=junk").json()["count"] == 0
    for method, url in (
        ("get", f"/api/webhooks/{ep.pk}/"),
        ("patch", f"/api/webhooks/{ep.pk}/"),
        ("post", f"/api/webhooks/{ep.pk}/regenerate-token/"),
        ("post", f"/api/webhooks/{ep.pk}/signing-secrets/"),
    ):
        r = getattr(other_api, method)(url, {}, format="json")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert api.get("/api/webhooks/not-a-uuid/").status_code == 404

    # Generated secret: shown once, then only metadata.
    r = api.post(f"/api/webhooks/{ep.pk}/signing-secrets/", {}, format="json")
    assert r.status_code == 201 and r.json()["secret"].startswith("whsec_")
    generated = r.json()["secret"]
    detail = api.get(f"/api/webhooks/{ep.pk}/")
    assert generated not in detail.content.decode() and len(detail.json()["signing_secrets"]) == 1
    assert generated not in api.get("/api/secrets/").content.decode()
    body = payload()
    assert post(client, ep, body, standard_headers(generated, body, "api1")).status_code == 202

    # Regenerating the token kills the old URL.
    old_path = ep.path
    r = api.post(f"/api/webhooks/{ep.pk}/regenerate-token/", {}, format="json")
    assert r.status_code == 200 and r.json()["token"] != ep.token
    assert (
        client.generic(
            "POST", old_path, body, content_type="application/json", headers=standard_headers(generated, body, "api2")
        ).status_code
        == 404
    )
    ep.refresh_from_db()
    assert post(client, ep, body, standard_headers(generated, body, "api2")).status_code == 202

    # Provided secret; bad ones rejected.
    r = api.post(f"/api/webhooks/{ep.pk}/signing-secrets/", {"secret": "not base64 !!"}, format="json")
    assert r.status_code == 400 and r.json()["error"]["details"][0]["path"] == "/secret"
    r = api.post(f"/api/webhooks/{ep.pk}/signing-secrets/", {"secret": 5}, format="json")
    assert r.status_code == 400
    r = api.post(f"/api/webhooks/{ep.pk}/signing-secrets/", {"secret": "whsec_c2Vjb25kLXNlY3JldC12YWx1ZQ==", "x": 1}, format="json")
    assert r.status_code == 400 and r.json()["error"]["details"][0]["code"] == "unknown_field"
    r = api.post(f"/api/webhooks/{ep.pk}/signing-secrets/", {"secret": "whsec_c2Vjb25kLXNlY3JldC12YWx1ZQ=="}, format="json")
    assert r.status_code == 201 and "secret" not in r.json()
    second = r.json()["id"]
    assert len(api.get(f"/api/webhooks/{ep.pk}/").json()["signing_secrets"]) == 2
    assert api.delete(f"/api/webhooks/{ep.pk}/signing-secrets/{second}/").status_code == 204
    assert api.delete(f"/api/webhooks/{ep.pk}/signing-secrets/{second}/").status_code == 404

    # PATCH: validated; unsigned must be chosen explicitly and is reported as such.
    r = api.patch(f"/api/webhooks/{ep.pk}/", {"signing_scheme": "none", "token": "x", "rate_limit_per_s": -1}, format="json")
    assert r.status_code == 400
    assert {d["path"] for d in r.json()["error"]["details"]} == {"/signing_scheme", "/token", "/rate_limit_per_s"}
    r = api.patch(f"/api/webhooks/{ep.pk}/", {"signing_scheme": "unsigned", "max_body_bytes": 4096}, format="json")
    assert r.status_code == 200 and r.json()["unsigned"] is True and r.json()["max_body_bytes"] == 4096
    assert api.patch(f"/api/webhooks/{ep.pk}/", [1], format="json").status_code == 400
    assert Run.objects.count() == 2


@pytest.mark.django_db
def test_admin_shows_unsigned_loudly(client: Client, staff_user: Any, user: Any) -> None:
    [ep] = services.webhook_endpoint_ensure(webhook_workflow(user, signing="unsigned"))
    assert ep.signing_scheme == SigningScheme.UNSIGNED
    client.force_login(staff_user)
    page = client.get("/admin/triggers/webhookendpoint/").content.decode()
    assert "UNSIGNED" in page
    assert client.get(f"/admin/triggers/webhookendpoint/{ep.pk}/change/").status_code == 200


@pytest.mark.django_db
def test_schedule_list_is_owner_scoped(api: Any, other_api: Any, user: Any) -> None:
    wf = make_workflow(user, {"nodes": [node("t", "SCHEDULE", {"cron": "*/5 * * * *"})], "edges": []})
    services.schedule_sync(wf)
    r = api.get("/api/schedules/")
    assert r.status_code == 200 and r.json()["results"][0]["cron"] == "*/5 * * * *" and r.json()["results"][0]["enabled"]
    assert other_api.get("/api/schedules/").json()["results"] == []


@pytest.mark.django_db
def test_delivery_ids_are_pruned_after_retention_only(user: Any, settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from triggers.models import WebhookDelivery

    [ep] = services.webhook_endpoint_ensure(webhook_workflow(user))
    old = WebhookDelivery.objects.create(endpoint=ep, delivery_id="old")
    recent = WebhookDelivery.objects.create(endpoint=ep, delivery_id="recent")
    WebhookDelivery.objects.filter(pk=old.pk).update(
        received_at=timezone.now() - timedelta(seconds=settings.ZYRA_WEBHOOK_REPLAY_RETENTION_S + 60)
    )
    # Retention never drops below twice the timestamp tolerance.
    assert settings.ZYRA_WEBHOOK_REPLAY_RETENTION_S >= 2 * settings.ZYRA_WEBHOOK_TOLERANCE_S
    assert services.webhook_deliveries_prune() == 1
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [recent.pk]


@pytest.mark.django_db
def test_admin_pages(client: Client, staff_user: Any, user: Any) -> None:
    wf = make_workflow(user, {"nodes": [node("t", "SCHEDULE", {"interval_s": 30}), node("h", "WEBHOOK")], "edges": []})
    services.triggers_sync(wf)
    client.force_login(staff_user)
    for url in ("/admin/triggers/schedule/", "/admin/triggers/webhookdelivery/", "/admin/triggers/webhookendpoint/"):
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_schedule_start_and_end(user: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    start = timezone.now() + timedelta(days=2)
    wf = make_workflow(user, {"nodes": [node("t", "SCHEDULE", {"interval_s": 60, "start_at": start.isoformat()})], "edges": []})
    [s] = services.schedule_sync(wf)
    assert s.next_run_at is not None and start <= s.next_run_at <= start + timedelta(seconds=61)
    ended = (timezone.now() - timedelta(days=1)).isoformat()
    wf2 = make_workflow(user, {"nodes": [node("t", "SCHEDULE", {"interval_s": 60, "end_at": ended})], "edges": []})
    [s2] = services.schedule_sync(wf2)
    assert s2.enabled and s2.next_run_at is None
    assert services.schedules_fire_due() == []
