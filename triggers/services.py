"""Writes for triggers: webhook endpoints and deliveries, schedules and their firing.

The workflow save path calls ``triggers_sync(workflow)`` (or the two halves,
``webhook_endpoint_ensure`` and ``schedule_sync``) after it changes the current
version, so endpoints and schedules follow the versions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets as pysecrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from secrets_vault.keyring import get_keyring
from secrets_vault.models import Secret
from secrets_vault.services import secret_create, secret_value_for
from triggers import ratelimit, signatures
from triggers.models import Schedule, SigningScheme, WebhookDelivery, WebhookEndpoint
from triggers.selectors import DeliveryTarget, SigningRow, webhook_delivery_target
from workflows.node_types.schedule import next_fire_time, schedule_config_errors
from zyra.errors import ErrorDetail, NotFound, ZyraError
from zyra.parsers import _check_body as check_body
from zyra.redaction import global_redactor

log = logging.getLogger("triggers.services")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")  # token_urlsafe alphabet; anything else never reaches the DB

SCHEME_ALIASES = {
    "standard_webhooks": SigningScheme.STANDARD_WEBHOOKS,
    "standard-webhooks": SigningScheme.STANDARD_WEBHOOKS,
    "standard": SigningScheme.STANDARD_WEBHOOKS,
    "github": SigningScheme.GITHUB,
    "unsigned": SigningScheme.UNSIGNED,
    "none": SigningScheme.UNSIGNED,
}


# --------------------------------------------------------------------------- trigger nodes


def _trigger_nodes(workflow: Any, node_type: str) -> list[dict[str, Any]]:
    version = workflow.current_version
    if version is None or not workflow.is_active:
        return []
    nodes = (version.definition or {}).get("nodes") or []
    out = []
    for node in nodes:
        if not isinstance(node, dict) or node.get("type") != node_type or not isinstance(node.get("id"), str):
            continue
        data = node.get("data")
        if isinstance(data, dict) and data.get("isEnabled") is False:
            continue
        out.append(node)
    return out


def _config(node: dict[str, Any]) -> dict[str, Any]:
    data = node.get("data")
    cfg = data.get("config") if isinstance(data, dict) else None
    return cfg if isinstance(cfg, dict) else {}


def triggers_sync(workflow: Any) -> None:
    """Bring webhook endpoints and schedules in line with the workflow's current version."""
    webhook_endpoint_ensure(workflow)
    schedule_sync(workflow)


# --------------------------------------------------------------------------- webhook endpoints


def _signing_names(cfg: dict[str, Any]) -> list[str]:
    names: list[str] = []
    single = cfg.get("secret_name")
    if isinstance(single, str) and single:
        names.append(single)
    many = cfg.get("secret_names")
    if isinstance(many, list):
        names += [n for n in many if isinstance(n, str) and n]
    return list(dict.fromkeys(names))[:10]


@transaction.atomic
def webhook_endpoint_ensure(workflow: Any) -> list[WebhookEndpoint]:
    """One active endpoint per enabled WEBHOOK node of the current version; others deactivated.

    Node config read: ``signing`` (``standard_webhooks`` | ``github`` |
    ``unsigned``), ``secret_name`` / ``secret_names`` (vault secrets of the owner
    that sign deliveries), ``max_body_bytes``, ``rate_limit_per_s``. A new endpoint
    without a configured secret verifies nothing and so accepts nothing (fail
    closed) until a secret is added or ``unsigned`` is chosen explicitly.
    """
    nodes = _trigger_nodes(workflow, "WEBHOOK")
    existing = {e.node_id: e for e in WebhookEndpoint.objects.select_for_update().filter(workflow=workflow)}
    kept: list[WebhookEndpoint] = []
    for node in nodes:
        cfg = _config(node)
        endpoint = existing.pop(node["id"], None) or WebhookEndpoint(workflow=workflow, node_id=node["id"])
        raw_scheme = cfg.get("signing", cfg.get("signature"))
        if isinstance(raw_scheme, str) and raw_scheme.lower() in SCHEME_ALIASES:
            endpoint.signing_scheme = SCHEME_ALIASES[raw_scheme.lower()]
        for key in ("max_body_bytes", "rate_limit_per_s"):
            value = cfg.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 50 * 1024 * 1024:
                setattr(endpoint, key, value)
        endpoint.secret_names = _signing_names(cfg)
        endpoint.is_active = True
        endpoint.save()
        kept.append(endpoint)
    for gone in existing.values():
        if gone.is_active:
            gone.is_active = False
            gone.save(update_fields=["is_active", "updated_at"])
    return kept


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, data: dict[str, Any]) -> WebhookEndpoint:
    details: list[ErrorDetail] = []
    allowed = {"signing_scheme", "max_body_bytes", "rate_limit_per_s", "is_active"}
    for key in data:
        if key not in allowed:
            details.append(ErrorDetail(f"/{key}", "unknown_field", "not writable"))
    if "signing_scheme" in data and data["signing_scheme"] not in SigningScheme.values:
        details.append(ErrorDetail("/signing_scheme", "invalid_choice", f"one of {', '.join(SigningScheme.values)}"))
    for key, hi in (("max_body_bytes", 50 * 1024 * 1024), ("rate_limit_per_s", 100_000)):
        if key in data:
            v = data[key]
            if not isinstance(v, int) or isinstance(v, bool) or not (0 if key == "rate_limit_per_s" else 1) <= v <= hi:
                details.append(ErrorDetail(f"/{key}", "invalid", f"an integer up to {hi}"))
    if "is_active" in data and not isinstance(data["is_active"], bool):
        details.append(ErrorDetail("/is_active", "invalid_type", "a boolean"))
    if details:
        raise ZyraError("validation_error", "The request is invalid.", details)
    for key, value in data.items():
        setattr(endpoint, key, value)
    endpoint.save()
    return endpoint


def webhook_endpoint_regenerate_token(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new URL; the old one stops working at once."""
    endpoint.token = pysecrets.token_urlsafe(32)
    endpoint.save(update_fields=["token", "updated_at"])
    log.info("triggers.webhook_token_regenerated endpoint_id=%s", endpoint.pk)
    return endpoint


def generate_signing_secret(scheme: str) -> str:
    if scheme == SigningScheme.GITHUB:
        return pysecrets.token_hex(32)
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@transaction.atomic
def webhook_signing_secret_add(*, endpoint: WebhookEndpoint, value: str | None = None) -> tuple[Secret, str | None]:
    """Store a signing secret in the owner's vault and attach it. Returns (secret, generated value or None).

    A generated value is returned once so it can be given to the sender; it is
    never readable again.
    """
    generated = None
    if value is None:
        value = generated = generate_signing_secret(endpoint.signing_scheme)
    elif endpoint.signing_scheme == SigningScheme.STANDARD_WEBHOOKS and isinstance(value, str):
        try:
            signatures.standard_secret_key(value)
        except ValueError as exc:
            raise ZyraError("validation_error", "The request is invalid.", [ErrorDetail("/secret", "invalid_secret", str(exc))]) from None
    n = endpoint.signing_secrets.count() + 1
    name = f"WEBHOOK_{endpoint.pk.hex[:12]}_{n}_{pysecrets.token_hex(2)}"
    secret = secret_create(owner=endpoint.workflow.owner, name=name, value=value, description=f"signing secret of webhook {endpoint.pk}")
    endpoint.signing_secrets.add(secret)
    return secret, generated


@transaction.atomic
def webhook_signing_secret_remove(*, endpoint: WebhookEndpoint, secret_id: int) -> None:
    secret = endpoint.signing_secrets.filter(pk=secret_id).first()
    if secret is None:
        raise NotFound("Signing secret not found.")
    endpoint.signing_secrets.remove(secret)
    secret.delete()


# --------------------------------------------------------------------------- deliveries


@dataclass
class Rejected(Exception):
    status: int
    code: str
    message: str
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)


# Decrypted signing secrets, keyed by the whole stored row (id, owner, name,
# ciphertext, nonce, wrapped key, key id): a changed value, a rename or a
# re-wrap under another master key is a different key, and the rows themselves
# are read on every delivery, so a removed or rotated secret counts at once.
# Only the AES-GCM decryption (and key unwrapping) is skipped. The values are
# already in this process's memory through the redactor, which registers every
# secret it has seen.
# The key ring's identity is part of the key too: a process never changes its
# ring, but tests do, and a value must never outlive the key that opened it.
_SIGNING_CACHE_MAX = 1024
_signing_cache: dict[tuple[int, SigningRow], str] = {}


def _signing_values(target: DeliveryTarget) -> list[str]:
    values = []
    redactor = global_redactor()
    ring = id(get_keyring())
    for row in target.secrets:
        value = _signing_cache.get((ring, row))
        if value is None:
            secret = Secret(
                id=row.id,
                owner_id=row.owner_id,
                name=row.name,
                ciphertext=row.ciphertext,
                nonce=row.nonce,
                wrapped_key=row.wrapped_key,
                key_id=row.key_id,
            )
            value = secret_value_for(secret=secret)
            if len(_signing_cache) >= _SIGNING_CACHE_MAX:
                _signing_cache.clear()
            _signing_cache[(ring, row)] = value
        redactor.register(row.name, value)  # never in a log line
        values.append(value)
    return values


def _delivery_key(endpoint: WebhookEndpoint, delivery_id: str) -> tuple[str, str]:
    """(stored delivery id, run idempotency key), both within their column sizes."""
    stored = delivery_id if len(delivery_id) <= 150 else "sha256:" + hashlib.sha256(delivery_id.encode()).hexdigest()
    return stored, f"webhook:{endpoint.pk.hex[:16]}:{stored}"


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def parse_json_body(content_type: str, body: bytes) -> dict[str, Any]:
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise Rejected(415, "unsupported_media_type", "the body must be application/json")
    try:
        text = body.decode("utf-8")
        payload = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        message = "the body is not valid UTF-8 JSON" if not isinstance(exc, RecursionError) else "the body is nested too deeply"
        raise Rejected(400, "malformed_json", message) from None
    if not isinstance(payload, dict):
        raise Rejected(400, "invalid_payload", "the body must be a JSON object")
    try:
        # The API's own body checks: what jsonb cannot store (NUL, lone surrogates,
        # infinite numbers) or Python cannot walk (deep nesting) is a 400, not a 500 later.
        check_body(payload)
    except ZyraError as exc:
        detail = exc.details[0] if exc.details else None
        raise Rejected(400, exc.code, exc.message, detail.path if detail else "") from None
    return payload


def _verify(target: DeliveryTarget, headers: Any, body: bytes) -> str | None:
    endpoint = target.endpoint
    scheme = endpoint.signing_scheme
    if scheme == SigningScheme.UNSIGNED:
        # Explicitly unsigned: an id the sender supplies still deduplicates.
        for name in ("webhook-id", "x-github-delivery", settings.ZYRA_IDEMPOTENCY_HEADER):
            value = headers.get(name)
            if value:
                value = str(value).strip()
                if not signatures.ID_RE.match(value):
                    raise Rejected(
                        400, "invalid_delivery_id", f"{name} must be 1-256 printable ASCII characters", f"/headers/{name.lower()}"
                    )
                return value
        return None
    values = _signing_values(target)
    try:
        if scheme == SigningScheme.GITHUB:
            return signatures.verify_github(headers=headers, body=body, secrets=values)
        keys = []
        for value in values:
            try:
                keys.append(signatures.standard_secret_key(value))
            except ValueError:
                log.warning("triggers.webhook_bad_secret endpoint_id=%s", endpoint.pk)
        return signatures.verify_standard(
            headers=headers, body=body, keys=keys, now=time.time(), tolerance_s=settings.ZYRA_WEBHOOK_TOLERANCE_S
        )
    except signatures.SignatureError as exc:
        raise Rejected(401, exc.code, exc.message, f"/headers/{exc.header}" if exc.header else "") from None


def webhook_check_rate(*, endpoint: WebhookEndpoint) -> None:
    allowed, retry_after = ratelimit.allow(str(endpoint.pk), rate_per_s=endpoint.rate_limit_per_s)
    if not allowed:
        raise Rejected(
            429,
            "rate_limited",
            f"over this endpoint's limit of {endpoint.rate_limit_per_s} requests/s",
            headers={"Retry-After": str(max(1, int(retry_after + 0.999)))},
        )


def _replayed() -> Rejected:
    return Rejected(409, "replayed_delivery", "this delivery id was already received", "/headers/webhook-id")


def _too_large(cap: int) -> Rejected:
    return Rejected(413, "body_too_large", f"the body is over this endpoint's cap of {cap} bytes")


def webhook_target(*, token: str) -> DeliveryTarget | None:
    """The active endpoint behind a token; a malformed token never reaches the database."""
    return webhook_delivery_target(token=token) if TOKEN_RE.match(token) else None


def webhook_admit(*, target: DeliveryTarget, content_length: str | None) -> None:
    """The checks made before the body is read, after the token: declared size (400/413), rate (429).

    The caller then reads at most ``endpoint.max_body_bytes + 1`` bytes and
    calls ``webhook_receive``.
    """
    cap = target.endpoint.max_body_bytes
    try:
        declared = int(content_length or 0)
    except ValueError:
        raise Rejected(400, "invalid_content_length", "Content-Length is not a number") from None
    if declared > cap:
        raise _too_large(cap)
    webhook_check_rate(endpoint=target.endpoint)


def webhook_receive(*, target: DeliveryTarget, headers: Any, content_type: str, body: bytes) -> uuid.UUID:
    """The checks on the body (size 413, signature 401, media type 415, JSON 400, replay 409), then the run.

    Returns the new run's id; raises Rejected otherwise. ``headers`` must be
    case-insensitive.
    """
    cap = target.endpoint.max_body_bytes
    if len(body) > cap:
        raise _too_large(cap)
    return webhook_deliver(target=target, headers=headers, content_type=content_type, body=body)


def _delivery_claim(endpoint: WebhookEndpoint, stored_id: str) -> int:
    """Insert the delivery row inside the caller's transaction; Rejected (409) when the id was already taken.

    A concurrent identical delivery waits on the unique index until the first
    transaction ends, then finds the id taken (or takes it, if that one rolled back).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(_CLAIM_SQL, [endpoint.pk, stored_id, timezone.now()])
            row = cur.fetchone()
        if row is None:
            raise _replayed()
        return int(row[0])
    try:
        with transaction.atomic():
            return int(WebhookDelivery.objects.create(endpoint=endpoint, delivery_id=stored_id).pk)
    except IntegrityError:
        raise _replayed() from None


_CLAIM_SQL = f"""
    INSERT INTO "{WebhookDelivery._meta.db_table}" (endpoint_id, delivery_id, received_at) VALUES (%s, %s, %s)
    ON CONFLICT (endpoint_id, delivery_id) DO NOTHING RETURNING id
"""


def webhook_deliver(*, target: DeliveryTarget, headers: Any, content_type: str, body: bytes) -> uuid.UUID:
    """Verify, parse and start exactly one run for a delivery; raise Rejected otherwise. Returns the run id.

    The delivery row (unique per endpoint and delivery id) and the run are
    created in one transaction: a concurrent duplicate waits on the unique
    index and then fails as a replay; a failed start leaves no row, so the
    sender's retry is not mistaken for a replay.
    """
    from executions.services import run_start

    endpoint = target.endpoint
    delivery_id = _verify(target, headers, body)
    payload = parse_json_body(content_type, body)
    if delivery_id is None:
        delivery_id = "unsigned:" + uuid.uuid4().hex
    stored_id, idem_key = _delivery_key(endpoint, delivery_id)
    try:
        with transaction.atomic():
            delivery_pk = _delivery_claim(endpoint, stored_id)
            run = run_start(
                workflow=endpoint.workflow,
                inputs=payload,
                user=endpoint.workflow.owner,
                trigger="webhook",
                idempotency_key=idem_key,
                priority=5,
            )
            if connection.vendor == "postgresql":
                with connection.cursor() as cur:
                    cur.execute(_SET_RUN_SQL, [run.pk, delivery_pk])
            else:
                WebhookDelivery.objects.filter(pk=delivery_pk).update(run_id=run.pk)
    except ZyraError as exc:
        path = exc.details[0].path if exc.details else ""
        raise Rejected(exc.status, exc.code, exc.message, path) from None
    log.info("triggers.webhook_accepted endpoint_id=%s run_id=%s", endpoint.pk, run.pk)
    return run.pk


_SET_RUN_SQL = f'UPDATE "{WebhookDelivery._meta.db_table}" SET run_id = %s WHERE id = %s'


def webhook_deliveries_prune(*, now: datetime | None = None) -> int:
    """Forget delivery ids older than the retention (always longer than the timestamp tolerance)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.ZYRA_WEBHOOK_REPLAY_RETENTION_S)
    deleted, _ = WebhookDelivery.objects.filter(received_at__lt=cutoff).delete()
    return deleted


# --------------------------------------------------------------------------- schedules


def _parse_dt(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def _schedule_fields(cfg: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Model fields from a SCHEDULE config, and an error message ('' when usable)."""
    errors = schedule_config_errors(cfg)
    raw_cron = cfg.get("cron")
    cron: str = raw_cron if isinstance(raw_cron, str) else ""
    interval = cfg.get("interval_s", cfg.get("interval"))
    interval_s = float(interval) if isinstance(interval, (int, float)) and not isinstance(interval, bool) else None
    raw_tz = cfg.get("timezone")
    tz: str = raw_tz if isinstance(raw_tz, str) else "UTC"
    fields = {
        "cron": cron or "",
        "interval_s": None if cron else interval_s,
        "timezone": tz[:64] or "UTC",
        "inputs": cfg["input"] if isinstance(cfg.get("input"), dict) else {},
        "start_at": _parse_dt(cfg.get("start_at")),
        "end_at": _parse_dt(cfg.get("end_at")),
        "catch_up": cfg.get("catch_up") is True,
    }
    error = ""
    if errors:
        error = "; ".join(message for _, _, message in errors)
    elif "{{" in cron or "{{" in tz:
        error = "cron and timezone cannot be templates"
    elif not cron and (interval_s is None or interval_s < 1):
        error = "a schedule needs a cron expression or interval_s >= 1"
    return fields, error


def _first_fire(schedule: Schedule, now: datetime) -> datetime | None:
    after = max(now, schedule.start_at - timedelta(microseconds=1)) if schedule.start_at else now
    nxt = next_fire_time(schedule.config(), after)
    if nxt is not None and schedule.end_at is not None and nxt > schedule.end_at:
        return None
    return nxt


@transaction.atomic
def schedule_sync(workflow: Any) -> list[Schedule]:
    """One schedule per enabled SCHEDULE node of the current version; the rest are deleted.

    A schedule whose timing did not change keeps its ``next_run_at`` (a save does
    not reset the clock); a changed or new one starts from now.
    """
    nodes = _trigger_nodes(workflow, "SCHEDULE")
    existing = {s.node_id: s for s in Schedule.objects.select_for_update().filter(workflow=workflow)}
    now = timezone.now()
    kept: list[Schedule] = []
    for node in nodes:
        cfg = _config(node)
        fields, error = _schedule_fields(cfg)
        schedule = existing.pop(node["id"], None)
        timing_keys = ("cron", "interval_s", "timezone", "start_at", "end_at")
        changed = schedule is None or any(getattr(schedule, k) != fields[k] for k in timing_keys)
        if schedule is None:
            schedule = Schedule(workflow=workflow, node_id=node["id"])
        for key, value in fields.items():
            setattr(schedule, key, value)
        schedule.enabled = not error and cfg.get("enabled") is not False
        schedule.last_error = error
        if not schedule.enabled:
            schedule.next_run_at = None
        elif changed or schedule.next_run_at is None:
            schedule.next_run_at = _first_fire(schedule, now)
        schedule.save()
        kept.append(schedule)
    for gone in existing.values():
        gone.delete()
    return kept


def _fire_one(schedule: Schedule, now: datetime) -> list[Any]:
    from executions.services import run_start

    due = schedule.next_run_at
    assert due is not None
    ticks = [due]
    if schedule.catch_up:
        limit = settings.ZYRA_SCHEDULE_MAX_CATCH_UP
        while len(ticks) < limit:
            nxt = next_fire_time(schedule.config(), ticks[-1])
            if nxt is None or nxt > now or (schedule.end_at and nxt > schedule.end_at):
                break
            ticks.append(nxt)
    runs = []
    error = ""
    for tick in ticks:
        inputs = dict(schedule.inputs) if schedule.inputs else {"scheduled_at": tick.isoformat().replace("+00:00", "Z")}
        try:
            with transaction.atomic():
                runs.append(
                    run_start(
                        workflow=schedule.workflow,
                        inputs=inputs,
                        user=schedule.workflow.owner,
                        trigger="schedule",
                        idempotency_key=f"schedule:{schedule.pk}:{int(tick.timestamp())}",
                        priority=3,
                    )
                )
        except ZyraError as exc:
            # The tick is spent either way: a broken workflow must not be retried every beat.
            error = f"{exc.code}: {exc.message}"
            log.warning("triggers.schedule_start_failed schedule_id=%s code=%s", schedule.pk, exc.code)
            break
    # Ticks missed while nothing ran collapse into the one run above (catch_up=False).
    nxt = next_fire_time(schedule.config(), max(now, ticks[-1]))
    if nxt is not None and schedule.end_at is not None and nxt > schedule.end_at:
        nxt = None
    schedule.next_run_at = nxt
    schedule.last_run_at = now
    schedule.last_error = error
    if runs:
        schedule.last_run_id = runs[-1].pk
    schedule.save(update_fields=["next_run_at", "last_run_at", "last_error", "last_run_id", "updated_at"])
    return runs


def _spend_tick(schedule: Schedule, now: datetime, error: str) -> None:
    nxt = next_fire_time(schedule.config(), now)
    if nxt is not None and schedule.end_at is not None and nxt > schedule.end_at:
        nxt = None
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=nxt, last_run_at=now, last_error=error, updated_at=now)


def schedules_fire_due(*, now: datetime | None = None, limit: int = 100) -> list[Any]:
    """Start the runs of every due schedule; returns the runs started.

    Rows are claimed with SELECT ... FOR UPDATE SKIP LOCKED, so several beat
    ticks or workers running this at once never fire one tick twice (and the
    run's idempotency key per tick backs that up).
    """
    now = now or timezone.now()
    started: list[Any] = []
    while True:
        with transaction.atomic():
            rows = list(
                Schedule.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("workflow", "workflow__owner")
                .filter(enabled=True, next_run_at__lte=now)
                .order_by("next_run_at")[:limit]
            )
            for schedule in rows:
                try:
                    with transaction.atomic():
                        started += _fire_one(schedule, now)
                except DatabaseError:
                    raise  # the connection or transaction is gone: the next tick retries the batch
                except Exception as exc:
                    # A schedule whose start crashes must not block every schedule behind it
                    # (rows are taken in next_run_at order): record it and spend the tick.
                    log.exception("triggers.schedule_fire_crashed schedule_id=%s", schedule.pk)
                    _spend_tick(schedule, now, f"{type(exc).__name__}: {exc}"[:1000])
        if len(rows) < limit:
            return started
