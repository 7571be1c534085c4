"""POST /hooks/{token}/: signed deliveries start exactly one run; everything else starts none."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client

from executions.models import Run
from secrets_vault.models import Secret
from tests.triggers.conftest import SECRET, payload, post, standard_headers, webhook_workflow
from triggers import services
from triggers.models import SigningScheme, WebhookDelivery, WebhookEndpoint
from triggers.signatures import github_sign


def _err(resp: Any, status: int, code: str) -> None:
    assert resp.status_code == status, resp.content
    body = resp.json()
    assert body["error"]["code"] == code, body
    assert set(body["error"]) == {"code", "message", "details"}


def _runs() -> int:
    return Run.objects.count()


@pytest.mark.django_db
def test_reference_library_signature_is_accepted(client: Client, endpoint: WebhookEndpoint) -> None:
    body = payload()
    r = post(client, endpoint, body, standard_headers(SECRET, body, "msg_accept"))
    assert r.status_code == 202, r.content
    run = Run.objects.get(pk=r.json()["run_id"])
    assert set(r.json()) == {"run_id"}
    assert run.inputs == json.loads(body) and run.trigger == "webhook" and run.workflow_id == endpoint.workflow_id
    assert run.idempotency_key is not None and run.idempotency_key.endswith(":msg_accept")
    assert WebhookDelivery.objects.get(endpoint=endpoint).run_id == run.pk
    # The signing secret lives in the vault, encrypted, never in the endpoint row.
    assert Secret.objects.filter(owner=endpoint.workflow.owner).count() == 1
    assert SECRET not in json.dumps(list(WebhookEndpoint.objects.values("token", "secret_names", "signing_scheme")))


@pytest.mark.django_db
def test_rotation_any_listed_signature_and_any_endpoint_secret(client: Client, endpoint: WebhookEndpoint) -> None:
    new_secret, generated = services.webhook_signing_secret_add(endpoint=endpoint)
    assert generated and generated.startswith("whsec_")
    body = payload()
    h_old = standard_headers(SECRET, body, "msg_rot1")
    h_new = standard_headers(generated, body, "msg_rot1")
    both = {**h_new, "webhook-signature": f"{h_old['webhook-signature']} {h_new['webhook-signature']}"}
    assert post(client, endpoint, body, both).status_code == 202
    h = standard_headers(generated, body, "msg_rot2")
    assert post(client, endpoint, body, h).status_code == 202
    services.webhook_signing_secret_remove(endpoint=endpoint, secret_id=new_secret.pk)
    h = standard_headers(generated, body, "msg_rot3")
    _err(post(client, endpoint, body, h), 401, "invalid_signature")
    assert _runs() == 2


@pytest.mark.django_db
def test_every_tampered_byte_is_rejected(client: Client, endpoint: WebhookEndpoint) -> None:
    body = payload()
    headers = standard_headers(SECRET, body, "msg_tamper")
    for i in range(len(body)):
        tampered = bytearray(body)
        tampered[i] ^= 0x01
        r = post(client, endpoint, bytes(tampered), headers)
        assert r.status_code == 401, (i, r.content)
    sig = headers["webhook-signature"]
    for i in range(3, len(sig)):
        ch = "A" if sig[i] != "A" else "B"
        _err(post(client, endpoint, body, {**headers, "webhook-signature": sig[:i] + ch + sig[i + 1 :]}), 401, "invalid_signature")
    _err(post(client, endpoint, body, {**headers, "webhook-id": "msg_tampeR"}), 401, "invalid_signature")
    _err(
        post(client, endpoint, body, {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}), 401, "invalid_signature"
    )
    assert _runs() == 0 and not WebhookDelivery.objects.exists()
    # The untouched delivery still goes through afterwards: rejections burned nothing.
    assert post(client, endpoint, body, headers).status_code == 202


@pytest.mark.django_db
def test_wrong_secret_timestamps_missing_headers(client: Client, endpoint: WebhookEndpoint) -> None:
    body = payload()
    wrong = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    _err(post(client, endpoint, body, standard_headers(wrong, body, "m1")), 401, "invalid_signature")
    _err(post(client, endpoint, body, standard_headers(SECRET, body, "m2", ts=time.time() - 360)), 401, "timestamp_too_old")
    _err(post(client, endpoint, body, standard_headers(SECRET, body, "m3", ts=time.time() + 360)), 401, "timestamp_too_new")
    good = standard_headers(SECRET, body, "m4")
    for name in good:
        _err(post(client, endpoint, body, {k: v for k, v in good.items() if k != name}), 401, "missing_signature")
    _err(post(client, endpoint, body, {}), 401, "missing_signature")
    assert _runs() == 0
    # Inside the window (4 minutes either way) is fine.
    assert post(client, endpoint, body, standard_headers(SECRET, body, "m5", ts=time.time() - 240)).status_code == 202
    assert post(client, endpoint, body, standard_headers(SECRET, body, "m6", ts=time.time() + 240)).status_code == 202
    assert _runs() == 2


@pytest.mark.django_db
def test_replay_is_409_and_makes_no_second_run(client: Client, endpoint: WebhookEndpoint) -> None:
    body = payload()
    headers = standard_headers(SECRET, body, "msg_replay")
    first = post(client, endpoint, body, headers)
    assert first.status_code == 202
    _err(post(client, endpoint, body, headers), 409, "replayed_delivery")
    # Re-signed with a fresh timestamp, same id: still a replay.
    _err(post(client, endpoint, body, standard_headers(SECRET, body, "msg_replay")), 409, "replayed_delivery")
    assert _runs() == 1


@pytest.mark.django_db
def test_body_cap_content_type_and_json(client: Client, endpoint: WebhookEndpoint) -> None:
    endpoint.max_body_bytes = 200
    endpoint.save()
    big = json.dumps({"pad": "x" * 300}).encode()
    _err(post(client, endpoint, big, standard_headers(SECRET, big, "big")), 413, "body_too_large")
    endpoint.max_body_bytes = 64 * 1024
    endpoint.save()
    for i, (ctype, body, status, code) in enumerate(
        [
            ("text/plain", b'{"a": 1}', 415, "unsupported_media_type"),
            ("application/x-www-form-urlencoded", b"a=1", 415, "unsupported_media_type"),
            ("application/json", b"{not json", 400, "malformed_json"),
            ("application/json", b"\xff\xfe{}", 400, "malformed_json"),
            ("application/json", b"[1, 2]", 400, "invalid_payload"),
            ("application/json", b'{"x": NaN}', 400, "malformed_json"),
            ("application/json", b'{"x": "a\\u0000b"}', 400, "invalid_string"),
            ("application/json", b'{"x": "a\\ud800b"}', 400, "invalid_string"),
            ("application/json", b'{"x": 1e400}', 400, "invalid_number"),
            ("application/json", b'{"x": ' + b"[" * 900 + b"]" * 900 + b"}", 400, "too_deeply_nested"),
            ("application/json", b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "malformed_json"),
            ("application/json", b"[" * 50 + b"]" * 50, 400, "invalid_payload"),
        ]
    ):
        r = post(client, endpoint, body, standard_headers(SECRET, body, f"bad{i}"), content_type=ctype)
        _err(r, status, code)
    assert _runs() == 0 and not WebhookDelivery.objects.exists()
    ok = b'{"a": 1}'
    assert post(client, endpoint, ok, standard_headers(SECRET, ok, "ok"), content_type="application/json; charset=utf-8").status_code == 202


@pytest.mark.django_db
def test_rate_limit_is_429_without_runs(client: Client, endpoint: WebhookEndpoint) -> None:
    endpoint.rate_limit_per_s = 3
    endpoint.save()
    body = payload()
    started = time.monotonic()
    statuses = [post(client, endpoint, body, standard_headers(SECRET, body, f"rl{i}")).status_code for i in range(12)]
    elapsed = time.monotonic() - started
    # A burst of one second's worth (3), then 3/s refill over the elapsed time.
    assert 3 <= statuses.count(202) <= 3 + int(elapsed * 3) + 1, (statuses, elapsed)
    assert statuses[:3] == [202, 202, 202] and 429 in statuses and set(statuses) == {202, 429}, statuses
    accepted = statuses.count(202)
    r = None
    for i in range(20):
        r = post(client, endpoint, body, standard_headers(SECRET, body, f"rl-more{i}"))
        if r.status_code == 429:
            break
        accepted += 1
    assert r is not None
    _err(r, 429, "rate_limited")
    assert int(r["Retry-After"]) >= 1
    assert _runs() == accepted


@pytest.mark.django_db
def test_unknown_inactive_and_method(client: Client, endpoint: WebhookEndpoint) -> None:
    body = payload()
    headers = standard_headers(SECRET, body, "x1")
    _err(client.generic("POST", "/hooks/" + "A" * 43 + "/", body, content_type="application/json", headers=headers), 404, "not_found")
    _err(client.generic("POST", "/hooks/short/", body, content_type="application/json", headers=headers), 404, "not_found")
    _err(client.get(endpoint.path), 405, "method_not_allowed")
    endpoint.is_active = False
    endpoint.save()
    _err(post(client, endpoint, body, headers), 404, "not_found")
    assert _runs() == 0


@pytest.mark.django_db
def test_fail_closed_without_secret_and_explicit_unsigned(client: Client, user: Any) -> None:
    [ep] = services.webhook_endpoint_ensure(webhook_workflow(user))
    body = payload()
    _err(post(client, ep, body, standard_headers(SECRET, body, "n1")), 401, "no_signing_secret")
    assert _runs() == 0
    [ep] = services.webhook_endpoint_ensure(webhook_workflow(user, signing="unsigned"))
    assert ep.signing_scheme == SigningScheme.UNSIGNED
    assert post(client, ep, body, {}).status_code == 202
    assert post(client, ep, body, {}).status_code == 202
    # An id the sender does give still deduplicates.
    assert post(client, ep, body, {"Idempotency-Key": "once"}).status_code == 202
    _err(post(client, ep, body, {"Idempotency-Key": "once"}), 409, "replayed_delivery")
    assert _runs() == 3


@pytest.mark.django_db
def test_github_scheme(client: Client, user: Any) -> None:
    secret = "It's a Secret to Everybody"
    [ep] = services.webhook_endpoint_ensure(webhook_workflow(user, signing="github"))
    services.webhook_signing_secret_add(endpoint=ep, value=secret)
    hello = b"Hello, World!"
    gh = {"X-Hub-Signature-256": github_sign(secret, hello), "X-GitHub-Delivery": "d-0", "X-GitHub-Event": "ping"}
    assert gh["X-Hub-Signature-256"] == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    # The published example verifies; its body is not JSON, so it then fails as such (not as a signature).
    _err(post(client, ep, hello, gh, content_type="text/plain"), 415, "unsupported_media_type")
    _err(post(client, ep, hello, gh), 400, "malformed_json")
    body = payload(action="opened")
    headers = {"X-Hub-Signature-256": github_sign(secret, body), "X-GitHub-Delivery": "d-1"}
    assert post(client, ep, body, headers).status_code == 202
    _err(post(client, ep, body, headers), 409, "replayed_delivery")
    _err(
        post(client, ep, body, {**headers, "X-GitHub-Delivery": "d-2", "X-Hub-Signature-256": github_sign("nope", body)}),
        401,
        "invalid_signature",
    )
    _err(post(client, ep, body, {"X-Hub-Signature-256": github_sign(secret, body)}), 401, "missing_signature")
    _err(post(client, ep, body, {"X-GitHub-Delivery": "d-3"}), 401, "missing_signature")
    _err(post(client, ep, body, {**headers, "X-GitHub-Delivery": "d-4", "X-Hub-Signature-256": "sha1=abc"}), 401, "invalid_signature")
    assert _runs() == 1


@pytest.mark.django_db
def test_secret_named_in_node_config_counts_even_if_created_later(client: Client, user: Any) -> None:
    from secrets_vault.services import secret_create

    [ep] = services.webhook_endpoint_ensure(webhook_workflow(user, secret_name="HOOK_SECRET"))
    body = payload()
    _err(post(client, ep, body, standard_headers(SECRET, body, "late1")), 401, "no_signing_secret")
    secret_create(owner=user, name="HOOK_SECRET", value=SECRET)
    assert post(client, ep, body, standard_headers(SECRET, body, "late2")).status_code == 202


@pytest.mark.django_db
def test_run_input_schema_rejection_creates_no_run_and_no_delivery(client: Client, user: Any) -> None:
    wf = webhook_workflow(user, input_schema={"type": "object", "required": ["order_id"]})
    [ep] = services.webhook_endpoint_ensure(wf)
    services.webhook_signing_secret_add(endpoint=ep, value=SECRET)
    body = payload()
    r = post(client, ep, body, standard_headers(SECRET, body, "schema1"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_inputs"
    assert _runs() == 0 and not WebhookDelivery.objects.exists()
    body = json.dumps({"order_id": 1}).encode()
    assert post(client, ep, body, standard_headers(SECRET, body, "schema1")).status_code == 202


@pytest.mark.django_db
def test_saturated_intake_is_503_not_500(client: Client, endpoint: WebhookEndpoint, settings: Any) -> None:
    from triggers import views

    settings.ZYRA_WEBHOOK_CONCURRENCY = 1
    settings.ZYRA_WEBHOOK_QUEUE_TIMEOUT_S = 0
    gate = views._gate(1)
    assert gate.acquire(timeout=1)
    body = payload()
    try:
        r = post(client, endpoint, body, standard_headers(SECRET, body, "busy1"))
        _err(r, 503, "busy")
        assert r["Retry-After"] == "5"
    finally:
        gate.release()
    assert _runs() == 0
    assert post(client, endpoint, body, standard_headers(SECRET, body, "busy1")).status_code == 202


@pytest.mark.django_db
def test_hostile_tokens_and_ids_are_4xx(client: Client, user: Any) -> None:
    [ep] = services.webhook_endpoint_ensure(webhook_workflow(user, signing="unsigned"))
    body = payload()
    for path in ("/hooks/%00" + "a" * 30 + "/", "/hooks/" + "%C3%A9" * 20 + "/", "/hooks/" + "a" * 65 + "/", "/hooks/..%2F..%2Fetc/"):
        r = client.generic("POST", path, body, content_type="application/json")
        assert r.status_code == 404, (path, r.status_code)
    _err(post(client, ep, body, {"webhook-id": "has space"}), 400, "invalid_delivery_id")
    _err(post(client, ep, body, {"Idempotency-Key": "x" * 300}), 400, "invalid_delivery_id")
    _err(post(client, ep, body, {"webhook-id": "caf\u00e9"}), 400, "invalid_delivery_id")
    assert _runs() == 0
    assert post(client, ep, body, {"webhook-id": "ok-id"}).status_code == 202
