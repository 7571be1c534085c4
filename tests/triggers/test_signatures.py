"""Signature primitives against the reference library and GitHub's published example (pure)."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from triggers.signatures import SignatureError, github_sign, standard_secret_key, standard_sign, verify_github, verify_standard


def test_github_published_example() -> None:
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    secret = "It's a Secret to Everybody"
    body = b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert github_sign(secret, body) == expected
    headers = {"x-hub-signature-256": expected, "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
    assert verify_github(headers=headers, body=body, secrets=[secret]) == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    with pytest.raises(SignatureError):
        verify_github(headers=headers, body=b"Hello, World?", secrets=[secret])
    with pytest.raises(SignatureError):
        verify_github(headers=headers, body=body, secrets=["It's a secret to everybody"])
    # Several secrets (rotation): any one verifies.
    assert verify_github(headers=headers, body=body, secrets=["old", secret])


def test_standard_signature_matches_reference_library() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    ts = 1614265330
    body = b'{"test": 2432232314}'
    ours = standard_sign(standard_secret_key(secret), msg_id, ts, body)
    theirs = Webhook(secret).sign(msg_id=msg_id, timestamp=datetime.fromtimestamp(ts, tz=UTC), data=body.decode())
    assert ours == theirs == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": ours}
    assert verify_standard(headers=headers, body=body, keys=[standard_secret_key(secret)], now=ts + 10, tolerance_s=300) == msg_id
    # The reference verifier agrees with ours on what we produce for "now".
    now = int(time.time())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": standard_sign(standard_secret_key(secret), msg_id, now, body),
    }
    Webhook(secret).verify(body, headers)


def test_standard_rejections() -> None:
    key = standard_secret_key("whsec_" + base64.b64encode(b"k" * 24).decode())
    body = b'{"a":1}'
    ts = 1_700_000_000
    good = standard_sign(key, "m1", ts, body)
    base = {"webhook-id": "m1", "webhook-timestamp": str(ts), "webhook-signature": good}

    def check(headers: dict[str, str], now: float = ts, keys: list[bytes] | None = None, data: bytes = body) -> str:
        try:
            verify_standard(headers=headers, body=data, keys=[key] if keys is None else keys, now=now, tolerance_s=300)
        except SignatureError as exc:
            return exc.code
        return "ok"

    assert check(base) == "ok"
    assert check({**base, "webhook-signature": f"v1,{base64.b64encode(b'x' * 32).decode()} {good}"}) == "ok"
    assert check({**base, "webhook-signature": f"v2,{good[3:]}"}) == "invalid_signature"
    assert check({**base, "webhook-signature": "garbage"}) == "invalid_signature"
    assert check(base, now=ts + 301) == "timestamp_too_old"
    assert check(base, now=ts - 301) == "timestamp_too_new"
    assert check(base, now=ts + 300) == "ok" and check(base, now=ts - 300) == "ok"
    assert check({**base, "webhook-timestamp": "1.5e9"}) == "invalid_timestamp"
    assert check({**base, "webhook-id": "m2"}) == "invalid_signature"
    assert check(base, keys=[]) == "no_signing_secret"
    assert check(base, data=body + b" ") == "invalid_signature"
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert check({k: v for k, v in base.items() if k != name}) == "missing_signature"
    # The reference library rejects what we reject (old timestamp).
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"k" * 24).decode()).verify(body, base)


def test_secret_format() -> None:
    with pytest.raises(ValueError):
        standard_secret_key("whsec_***")
    with pytest.raises(ValueError):
        standard_secret_key("whsec_")
    assert standard_secret_key("whsec_" + base64.b64encode(b"abc").decode()) == b"abc"


def test_non_canonical_base64_is_not_a_second_valid_signature() -> None:
    key = standard_secret_key("whsec_" + base64.b64encode(b"k" * 24).decode())
    body = b'{"a":1}'
    for ts in range(1_700_000_000, 1_700_000_200):
        good = standard_sign(key, "m1", ts, body)
        # The character before '=' carries 2 spare bits: flipping them keeps the decoded bytes.
        last = good[-2]
        idx = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".index(last)
        twin = good[:-2] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[idx ^ 1] + "="
        assert base64.b64decode(twin[3:]) == base64.b64decode(good[3:])
        headers = {"webhook-id": "m1", "webhook-timestamp": str(ts), "webhook-signature": twin}
        with pytest.raises(SignatureError):
            verify_standard(headers=headers, body=body, keys=[key], now=ts, tolerance_s=300)
        assert verify_standard(headers={**headers, "webhook-signature": good}, body=body, keys=[key], now=ts, tolerance_s=300)
