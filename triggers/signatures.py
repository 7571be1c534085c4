"""Webhook signature verification. Pure: no Django, no database.

Standard Webhooks (https://www.standardwebhooks.com): HMAC-SHA256 over
``{webhook-id}.{webhook-timestamp}.{raw body}`` with the base64-decoded
``whsec_`` secret; ``webhook-signature`` holds space-separated ``v1,<base64>``
entries, any of which may match (the sender rotates secrets that way).

GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`` keyed
with the secret's UTF-8 bytes; ``X-GitHub-Delivery`` identifies the delivery.

Every comparison is ``hmac.compare_digest``; nothing here returns early on a
partial match.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_SIGNATURES = 16  # entries in one webhook-signature header considered
MAX_ID_LEN = 256
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_TS = re.compile(r"^[0-9]{1,12}$")
ID_RE = re.compile(r"^[\x21-\x7e]{1,256}$")  # printable ASCII, no spaces
_ID = ID_RE


@dataclass
class SignatureError(Exception):
    code: str
    message: str
    header: str = ""  # the header the problem is in, for the error's path

    def __post_init__(self) -> None:
        super().__init__(self.message)


def standard_secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_<base64>``; the prefix is optional)."""
    raw = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        key = base64.b64decode(raw.strip() + "=" * (-len(raw.strip()) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Standard Webhooks secret must be 'whsec_' followed by base64") from None
    if not key:
        raise ValueError("empty webhook secret")
    return key


def standard_sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def github_sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def verify_standard(*, headers: Mapping[str, str], body: bytes, keys: list[bytes], now: float, tolerance_s: int) -> str:
    """Return the verified ``webhook-id``; raise SignatureError (an HTTP 401) otherwise.

    ``headers`` must be case-insensitive or lower-cased.
    """
    msg_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signature = _header(headers, "webhook-signature")
    for name, value in (("webhook-id", msg_id), ("webhook-timestamp", timestamp), ("webhook-signature", signature)):
        if value is None:
            raise SignatureError("missing_signature", f"the {name} header is required", name)
    assert msg_id is not None and timestamp is not None and signature is not None
    if not _ID.match(msg_id):
        raise SignatureError("invalid_signature", "webhook-id must be 1-256 printable characters", "webhook-id")
    if not _TS.match(timestamp):
        raise SignatureError("invalid_timestamp", "webhook-timestamp must be integer seconds since the epoch", "webhook-timestamp")
    ts = int(timestamp)
    if ts < now - tolerance_s:
        raise SignatureError("timestamp_too_old", f"webhook-timestamp is more than {tolerance_s} s in the past", "webhook-timestamp")
    if ts > now + tolerance_s:
        raise SignatureError("timestamp_too_new", f"webhook-timestamp is more than {tolerance_s} s in the future", "webhook-timestamp")
    if not keys:
        raise SignatureError("no_signing_secret", "the endpoint has no signing secret configured", "webhook-signature")
    candidates: list[bytes] = []
    for entry in signature.split(" ")[:MAX_SIGNATURES]:
        version, sep, encoded = entry.partition(",")
        if not sep or version != "v1":
            continue
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        # Canonical encodings only: base64's spare low bits in the last character
        # would otherwise let several different strings pass as one signature.
        if base64.b64encode(decoded).decode() == encoded:
            candidates.append(decoded)
    matched = False
    for key in keys:
        expected = base64.b64decode(standard_sign(key, msg_id, ts, body)[3:])
        for candidate in candidates:
            # No early exit: the work done does not depend on which entry matches.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("invalid_signature", "no webhook-signature entry matches the body", "webhook-signature")
    return msg_id


def verify_github(*, headers: Mapping[str, str], body: bytes, secrets: list[str]) -> str:
    """Return the ``X-GitHub-Delivery`` id; raise SignatureError (an HTTP 401) otherwise."""
    signature = _header(headers, "x-hub-signature-256")
    if signature is None:
        raise SignatureError("missing_signature", "the X-Hub-Signature-256 header is required", "x-hub-signature-256")
    delivery = _header(headers, "x-github-delivery")
    if delivery is None:
        # Without it a delivery cannot be told from a replay.
        raise SignatureError("missing_signature", "the X-GitHub-Delivery header is required", "x-github-delivery")
    if not _ID.match(delivery):
        raise SignatureError("invalid_signature", "X-GitHub-Delivery must be 1-256 printable characters", "x-github-delivery")
    scheme, _, digest = signature.partition("=")
    if scheme != "sha256" or not _HEX64.match(digest):
        raise SignatureError("invalid_signature", "X-Hub-Signature-256 must be sha256=<64 hex digits>", "x-hub-signature-256")
    if not secrets:
        raise SignatureError("no_signing_secret", "the endpoint has no signing secret configured", "x-hub-signature-256")
    given = digest.lower().encode()
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().encode()
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise SignatureError("invalid_signature", "X-Hub-Signature-256 does not match the body", "x-hub-signature-256")
    return delivery
