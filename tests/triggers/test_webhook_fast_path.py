"""The ASGI fast path (triggers/asgi.py): same checks, answers and headers as the Django view, on live servers.

Also the per-process cache of decrypted signing secrets: a removed, changed,
renamed or re-wrapped secret counts on the very next delivery.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings

from executions.models import Run
from secrets_vault import services as vault
from secrets_vault.models import Secret
from tests.executions.monitoring.support import AsgiServer, start_server
from tests.triggers.conftest import SECRET, payload, post, standard_headers, webhook_workflow
from triggers import intake, services
from triggers.asgi import PREFETCH_BYTES, WebhookIntake
from triggers.models import WebhookDelivery, WebhookEndpoint

OTHER = "whsec_" + "b3RoZXItc2lnbmluZy1rZXktMzItYnl0ZXMhISEhIQ=="
# Headers every answer carries, whichever path produced it (the server adds date/server).
COMPARED = ("content-type", "content-length", "x-frame-options", "x-content-type-options", "referrer-policy", "cross-origin-opener-policy")


def _endpoint(user: Any, **config: Any) -> WebhookEndpoint:
    [ep] = services.webhook_endpoint_ensure(webhook_workflow(user, **config))
    if ep.signing_scheme != "unsigned":
        services.webhook_signing_secret_add(endpoint=ep, value=SECRET)
    ep.rate_limit_per_s = 0
    ep.save()
    return ep


def _headers(ep_secret: str, body: bytes, msg_id: str) -> dict[str, str]:
    return {**standard_headers(ep_secret, body, msg_id), "content-type": "application/json"}


@pytest.fixture(params=[("uvicorn", True), ("daphne", True), ("uvicorn", False)], ids=["uvicorn", "daphne", "uvicorn-django-path"])
def live(request: Any, transactional_db: Any) -> Iterator[tuple[AsgiServer, bool]]:
    server_kind, fast = request.param
    env = {"ZYRA_WEBHOOK_FAST_PATH": "true" if fast else "false"}
    server = start_server(connection.settings_dict["NAME"], f"webhooks-fast-{server_kind}-{fast}", env, server=server_kind)
    yield server, fast
    server.stop()


def test_every_answer_matches_the_django_view(live: tuple[AsgiServer, bool], user: Any) -> None:
    server, _ = live
    ep = _endpoint(user)
    url = server.http + ep.path
    body = payload()
    django = Client()
    seen: dict[str, httpx.Response] = {}
    with httpx.Client(timeout=30) as http:
        ok = http.post(url, content=body, headers=_headers(SECRET, body, "fp-1"))
        assert ok.status_code == 202, ok.text
        seen["202"] = ok
        cases = [
            ("409", _headers(SECRET, body, "fp-1"), body, 409, "replayed_delivery"),
            ("401", _headers(OTHER, body, "fp-2"), body, 401, "invalid_signature"),
            ("401-missing", {"content-type": "application/json"}, body, 401, "missing_signature"),
            (
                "401-old",
                {**_headers(SECRET, body, "fp-3"), **standard_headers(SECRET, body, "fp-3", ts=time.time() - 400)},
                body,
                401,
                "timestamp_too_old",
            ),
            ("415", {**_headers(SECRET, body, "fp-4"), "content-type": "text/plain"}, body, 415, "unsupported_media_type"),
            ("400", _headers(SECRET, b"[1]", "fp-5"), b"[1]", 400, "invalid_payload"),
        ]
        for name, headers, content, status, code in cases:
            r = http.post(url, content=content, headers=headers)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), (name, r.text)
            seen[name] = r
        unknown = http.post(server.http + "/hooks/" + "Z" * 43 + "/", content=body, headers=_headers(SECRET, body, "fp-6"))
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        # Not for the fast path: Django answers, as before.
        get = http.get(url)
        assert get.status_code == 405 and get.headers["allow"] == "POST"
        bad_host = http.post(url, content=body, headers={**_headers(SECRET, body, "fp-7"), "host": "evil.example"})
        assert bad_host.status_code == 400
        ep.max_body_bytes = 100
        ep.save()
        big = json.dumps({"pad": "x" * 200}).encode()
        r = http.post(url, content=big, headers=_headers(SECRET, big, "fp-8"))
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        seen["413"] = r
        ep.max_body_bytes = 64 * 1024
        ep.rate_limit_per_s = 1
        ep.save()
        statuses = [http.post(url, content=body, headers=_headers(SECRET, body, f"fp-rl-{i}")).status_code for i in range(3)]
        assert 429 in statuses, statuses
        limited = http.post(url, content=body, headers=_headers(SECRET, body, "fp-rl-x"))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    accepted = 1 + statuses.count(202)
    assert Run.objects.filter(workflow=ep.workflow).count() == accepted
    assert WebhookDelivery.objects.filter(endpoint=ep, run_id__isnull=False).count() == accepted
    assert str(Run.objects.get(idempotency_key__endswith=":fp-1").pk) == seen["202"].json()["run_id"]

    # The same requests through Django's full request cycle (middleware and all): same headers and bodies.
    ep.rate_limit_per_s = 0
    ep.save()
    for name, r in seen.items():
        if name == "202":
            body2 = payload()
            ref = post(django, ep, body2, standard_headers(SECRET, body2, "fp-django"))
        elif name == "413":
            ep.max_body_bytes = 100
            ep.save()
            ref = post(django, ep, big, standard_headers(SECRET, big, "fp-django-big"))
            ep.max_body_bytes = 64 * 1024
            ep.save()
        else:
            ref = None
        if ref is not None:
            assert ref.status_code == r.status_code
            for h in COMPARED:
                if h == "content-length" and name == "202":
                    continue  # the run id is the same length, but the view's 202 may differ in nothing else
                assert r.headers.get(h) == ref.headers.get(h), (name, h, r.headers.get(h), ref.headers.get(h))
            if name != "202":
                assert r.json() == ref.json()
        else:
            for h in ("content-type", "x-frame-options", "x-content-type-options", "referrer-policy"):
                assert r.headers.get(h), (name, h)


def test_large_and_chunked_bodies(transactional_db: Any, user: Any) -> None:
    server = start_server(connection.settings_dict["NAME"], "webhooks-fast-bodies", {}, server="uvicorn")
    try:
        ep = _endpoint(user)
        ep.max_body_bytes = 4 * PREFETCH_BYTES
        ep.save()
        url = server.http + ep.path
        with httpx.Client(timeout=30) as http:
            # Over the prefetch size but under the cap: read after the endpoint is known, accepted.
            big = json.dumps({"pad": "y" * (2 * PREFETCH_BYTES)}).encode()
            assert http.post(url, content=big, headers=_headers(SECRET, big, "lg-1")).status_code == 202
            # Chunked (no Content-Length), under the cap: accepted too.
            r = http.post(url, content=iter([big[:1000], big[1000:]]), headers=_headers(SECRET, big, "lg-2"))
            assert r.status_code == 202, r.text
            huge = json.dumps({"pad": "z" * (5 * PREFETCH_BYTES)}).encode()
            # Declared over the cap, and chunked over the cap: 413, no run.
            r = http.post(url, content=huge, headers=_headers(SECRET, huge, "lg-3"))
            assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
            chunks = [huge[i : i + 8192] for i in range(0, len(huge), 8192)]
            r = http.post(url, content=iter(chunks), headers=_headers(SECRET, huge, "lg-4"))
            assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        assert Run.objects.filter(workflow=ep.workflow).count() == 2
        assert sorted(WebhookDelivery.objects.filter(endpoint=ep).values_list("delivery_id", flat=True)) == ["lg-1", "lg-2"]
    finally:
        server.stop()


class _Downstream:
    """The application behind the middleware: records what reached it."""

    def __init__(self) -> None:
        self.paths: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _call(app: WebhookIntake, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.django_db(transaction=True)
def test_only_hook_posts_with_an_allowed_host_take_the_fast_path(user: Any) -> None:
    ep = _endpoint(user)
    body = payload()
    downstream = _Downstream()
    app = WebhookIntake(downstream)
    host = {"host": "127.0.0.1"}
    status, content = asyncio.run(_call(app, "POST", ep.path, {**host, **_headers(SECRET, body, "mw-1")}, body))
    assert status == 202 and json.loads(content)["run_id"]
    status, _ = asyncio.run(_call(app, "POST", ep.path, {**host, **_headers(SECRET, body, "mw-1")}, body))
    assert status == 409
    assert downstream.paths == []
    for method, path, headers in [
        ("GET", ep.path, host),
        ("POST", ep.path + "extra/", host),
        ("POST", "/api/workflows/", host),
        ("POST", ep.path, {"host": "evil.example"}),
    ]:
        assert asyncio.run(_call(app, method, path, {**headers, **_headers(SECRET, body, "mw-2")}, body))[0] == 299
    assert len(downstream.paths) == 4
    with override_settings(ZYRA_WEBHOOK_FAST_PATH=False):
        assert asyncio.run(_call(app, "POST", ep.path, {**host, **_headers(SECRET, body, "mw-3")}, body))[0] == 299
    with override_settings(SECURE_SSL_REDIRECT=True):
        assert asyncio.run(_call(app, "POST", ep.path, {**host, **_headers(SECRET, body, "mw-4")}, body))[0] == 299
    assert Run.objects.filter(workflow=ep.workflow).count() == 1
    # Explicitly unsigned: the sender's Idempotency-Key (any case) still deduplicates.
    unsigned = _endpoint(user, signing="unsigned")
    plain = {**host, "content-type": "application/json", "IDEMPOTENCY-KEY": "mw-idem"}
    assert asyncio.run(_call(app, "POST", unsigned.path, plain, body))[0] == 202
    assert asyncio.run(_call(app, "POST", unsigned.path, plain, body))[0] == 409
    assert Run.objects.filter(workflow=unsigned.workflow).count() == 1
    intake.pool(settings.ZYRA_WEBHOOK_CONCURRENCY, settings.ZYRA_WEBHOOK_CONCURRENCY * 32).close_connections()


@pytest.mark.django_db
def test_secret_changes_count_on_the_next_delivery(client: Client, user: Any) -> None:
    """The decrypted value is cached per stored row; every change to the row is seen at once."""
    ep = _endpoint(user)
    body = payload()
    assert post(client, ep, body, standard_headers(SECRET, body, "sc-1")).status_code == 202
    # Changing the value in place: the old one stops verifying, the new one verifies.
    [secret] = ep.signing_secrets.all()
    vault.secret_update(secret=secret, value=OTHER)
    assert post(client, ep, body, standard_headers(SECRET, body, "sc-2")).status_code == 401
    assert post(client, ep, body, standard_headers(OTHER, body, "sc-3")).status_code == 202
    # Removing it: nothing verifies (fail closed).
    services.webhook_signing_secret_remove(endpoint=ep, secret_id=secret.pk)
    r = post(client, ep, body, standard_headers(OTHER, body, "sc-4"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "no_signing_secret"
    # A secret named in the node config: created, then deleted.
    ep.secret_names = ["HOOK_KEY"]
    ep.save()
    named = vault.secret_create(owner=user, name="HOOK_KEY", value=SECRET)
    assert post(client, ep, body, standard_headers(SECRET, body, "sc-5")).status_code == 202
    vault.secret_delete(secret=Secret.objects.get(pk=named.pk))
    assert post(client, ep, body, standard_headers(SECRET, body, "sc-6")).status_code == 401
    assert Run.objects.filter(workflow=ep.workflow).count() == 3


@pytest.mark.django_db
def test_master_key_rotation_with_cached_secret(client: Client, user: Any) -> None:
    import base64

    k1 = "k1:" + base64.b64encode(b"\x11" * 32).decode()
    k2 = "k2:" + base64.b64encode(b"\x22" * 32).decode()
    body = payload()
    with override_settings(ZYRA_MASTER_KEYS=k1):
        ep = _endpoint(user)
        assert post(client, ep, body, standard_headers(SECRET, body, "mk-1")).status_code == 202
    with override_settings(ZYRA_MASTER_KEYS=f"{k2},{k1}"):
        vault.secrets_rotate_master_key()
        assert post(client, ep, body, standard_headers(SECRET, body, "mk-2")).status_code == 202
    with override_settings(ZYRA_MASTER_KEYS=k2):
        assert post(client, ep, body, standard_headers(SECRET, body, "mk-3")).status_code == 202
    # A ring that cannot open the row fails loudly, even though the value was cached under another ring.
    with override_settings(ZYRA_MASTER_KEYS=k1), pytest.raises(Exception):  # noqa: B017, PT011 - the vault's own error type
        post(client, ep, body, standard_headers(SECRET, body, "mk-4"))
    assert Run.objects.filter(workflow=ep.workflow).count() == 3


@pytest.mark.django_db
def test_hand_written_lookup_matches_the_orm_one(user: Any, other_user: Any) -> None:
    """The PostgreSQL query and the ORM fallback (embedded SQLite) load the same target."""
    from triggers.selectors import _delivery_target_orm, webhook_delivery_target

    ep = _endpoint(user)
    services.webhook_signing_secret_add(endpoint=ep, value=OTHER)
    ep.secret_names = ["NAMED", "MISSING"]
    ep.save()
    vault.secret_create(owner=user, name="NAMED", value="named-value-123456")
    vault.secret_create(owner=other_user, name="NAMED", value="not-this-owners-secret")
    fast = webhook_delivery_target(token=ep.token)
    slow = _delivery_target_orm(ep.token)
    assert fast is not None and slow is not None
    assert fast.secrets == slow.secrets and len(fast.secrets) == 3
    assert {s.owner_id for s in fast.secrets} == {user.pk}
    for a, b in ((fast.endpoint, slow.endpoint), (fast.endpoint.workflow, slow.endpoint.workflow)):
        assert {f.attname: getattr(a, f.attname) for f in type(a)._meta.concrete_fields} == {
            f.attname: getattr(b, f.attname) for f in type(b)._meta.concrete_fields
        }
    version, slow_version = fast.endpoint.workflow.current_version, slow.endpoint.workflow.current_version
    assert version is not None and slow_version is not None and version.definition == slow_version.definition
    assert fast.endpoint.workflow.owner.pk == user.pk
    # Inactive endpoint, archived workflow, unknown token: nothing.
    ep.workflow.is_active = False
    ep.workflow.save()
    assert webhook_delivery_target(token=ep.token) is None and _delivery_target_orm(ep.token) is None
    assert webhook_delivery_target(token="x" * 43) is None
