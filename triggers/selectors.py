"""Reads for triggers, always scoped to the owner."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple, cast

from django.db import connection, models
from django.db.models import QuerySet

from triggers.models import Schedule, WebhookEndpoint
from zyra.errors import NotFound


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def webhook_endpoint_list(*, owner: Any, workflow_id: str | None = None) -> QuerySet[WebhookEndpoint]:
    qs = WebhookEndpoint.objects.filter(workflow__owner_id=owner.pk).prefetch_related("signing_secrets").order_by("-created_at")
    if workflow_id is not None:
        wid = _uuid(workflow_id)
        qs = qs.filter(workflow_id=wid) if wid else qs.none()
    return qs


def webhook_endpoint_get(*, owner: Any, endpoint_id: str) -> WebhookEndpoint:
    eid = _uuid(endpoint_id)
    endpoint = WebhookEndpoint.objects.filter(pk=eid, workflow__owner_id=owner.pk).first() if eid else None
    if endpoint is None:
        raise NotFound("Webhook endpoint not found.")
    return endpoint


def schedule_list(*, owner: Any, workflow_id: str | None = None) -> QuerySet[Schedule]:
    qs = Schedule.objects.filter(workflow__owner_id=owner.pk).order_by("-created_at")
    if workflow_id is not None:
        wid = _uuid(workflow_id)
        qs = qs.filter(workflow_id=wid) if wid else qs.none()
    return qs


# --------------------------------------------------------------------------- delivery target


class SigningRow(NamedTuple):
    """The stored (encrypted) form of one signing secret; the whole tuple keys the decrypted-value cache."""

    id: int
    owner_id: int
    name: str
    ciphertext: bytes
    nonce: bytes
    wrapped_key: bytes
    key_id: str


@dataclass
class DeliveryTarget:
    """An active endpoint with its workflow, current version and owner loaded, and its signing-secret rows."""

    endpoint: WebhookEndpoint
    secrets: list[SigningRow]


def _columns(model: type[models.Model], alias: str, skip: tuple[str, ...] = ()) -> tuple[list[models.Field[Any, Any]], str]:
    fields = [f for f in model._meta.concrete_fields if f.name not in skip]
    return fields, ", ".join(f'{alias}."{f.column}"' for f in fields)


@lru_cache(maxsize=1)
def _target_sql() -> tuple[str, list[tuple[type[models.Model], list[models.Field[Any, Any]]]]]:
    from django.contrib.auth import get_user_model

    from secrets_vault.models import Secret
    from workflows.models import Workflow, WorkflowVersion

    user_model = get_user_model()
    parts: list[tuple[type[models.Model], list[models.Field[Any, Any]], str]] = [
        (WebhookEndpoint, *_columns(WebhookEndpoint, "e")),
        (Workflow, *_columns(Workflow, "w")),
        # The builder's submitted document is not needed to start a run.
        (WorkflowVersion, *_columns(WorkflowVersion, "v", skip=("submitted", "submitted_text"))),
        (user_model, *_columns(user_model, "u", skip=("password",))),
    ]
    m2m = WebhookEndpoint._meta.get_field("signing_secrets").remote_field.through._meta.db_table  # type: ignore[union-attr]
    secret = Secret._meta.db_table
    # One round trip: the endpoint, its workflow, version and owner, and every
    # signing-secret row (attached ones, and the owner's secrets named in the node
    # config). The rows are read on every delivery, so a rotated, changed or removed
    # secret counts at once; only the decryption is cached.
    sql = f"""
        SELECT {", ".join(cols for _, _, cols in parts)},
          (SELECT coalesce(json_agg(json_build_object(
                    'id', s.id, 'owner_id', s.owner_id, 'name', s.name, 'key_id', s.key_id,
                    'ciphertext', encode(s.ciphertext, 'base64'), 'nonce', encode(s.nonce, 'base64'),
                    'wrapped_key', encode(s.wrapped_key, 'base64')) ORDER BY s.id), '[]')
             FROM "{secret}" s
            WHERE s.id IN (SELECT m.secret_id FROM "{m2m}" m WHERE m.webhookendpoint_id = e.id)
               OR (s.owner_id = w.owner_id AND jsonb_typeof(e.secret_names) = 'array'
                   AND s.name IN (SELECT jsonb_array_elements_text(e.secret_names))))
          FROM "{WebhookEndpoint._meta.db_table}" e
          JOIN "{Workflow._meta.db_table}" w ON w.id = e.workflow_id
          JOIN "{user_model._meta.db_table}" u ON u.id = w.owner_id
          LEFT JOIN "{WorkflowVersion._meta.db_table}" v ON v.id = w.current_version_id
         WHERE e.token = %s AND e.is_active AND w.is_active
    """
    return sql, [(model, fields) for model, fields, _ in parts]


# Statements PREPAREd on each physical connection (PostgreSQL keeps them for the
# session, whatever happens to transactions).
_prepared_on: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _execute_prepared(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Run a statement as a server-side prepared statement of this session.

    Django binds parameters on the client and turns psycopg's automatic
    preparing off (``prepare_threshold=None``), so PostgreSQL parses and plans
    every statement again: for the delivery lookup that cost more than running
    it (about 0.5 ms against 0.25 ms prepared, measured on this box). An
    explicit PREPARE, once per connection, through Django's cursor (same
    health check and error handling). Needs session-level connections: behind
    a transaction-pooling proxy (PgBouncer ``pool_mode=transaction``) or after
    ``DISCARD ALL`` the EXECUTE would fail; Zyra connects directly or through
    Django's psycopg pool, which keeps sessions.
    """
    name = "zyra_" + hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:16]
    with connection.cursor() as cur:
        raw = connection.connection
        done = _prepared_on.get(raw)
        if done is None:
            done = _prepared_on[raw] = set()
        if name not in done:
            numbered = sql
            for i in range(len(params)):
                numbered = numbered.replace("%s", f"${i + 1}", 1)
            cur.execute(f"PREPARE {name} AS {numbered}")
            done.add(name)
        cur.execute(f"EXECUTE {name}({', '.join(['%s'] * len(params))})", params)
        return cur.fetchall()


def _instance(model: type[models.Model], fields: list[models.Field[Any, Any]], values: Any) -> models.Model:
    converted = []
    for f, value in zip(fields, values, strict=True):
        from_db = getattr(f, "from_db_value", None)
        converted.append(from_db(value, None, connection) if from_db is not None and value is not None else value)
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


def webhook_delivery_target(*, token: str) -> DeliveryTarget | None:
    """The active endpoint behind ``token`` (of an active workflow) with what a delivery needs, or None.

    On PostgreSQL one hand-written query; elsewhere (embedded SQLite) the ORM.
    """
    if connection.vendor != "postgresql":
        return _delivery_target_orm(token)
    sql, parts = _target_sql()
    rows = _execute_prepared(sql, [token])
    if not rows:
        return None
    row = rows[0]
    instances = []
    at = 0
    for model, fields in parts:
        instances.append(_instance(model, fields, row[at : at + len(fields)]))
        at += len(fields)
    endpoint, workflow, version, owner = instances
    workflow.owner = owner  # type: ignore[attr-defined]
    workflow.current_version = version if version.pk is not None else None  # type: ignore[attr-defined]
    endpoint.workflow = workflow  # type: ignore[attr-defined]
    raw = row[at]
    items = json.loads(raw) if isinstance(raw, str) else raw
    secrets = [
        SigningRow(
            id=s["id"],
            owner_id=s["owner_id"],
            name=s["name"],
            ciphertext=base64.b64decode(s["ciphertext"]),
            nonce=base64.b64decode(s["nonce"]),
            wrapped_key=base64.b64decode(s["wrapped_key"]),
            key_id=s["key_id"],
        )
        for s in items
    ]
    return DeliveryTarget(endpoint=cast(WebhookEndpoint, endpoint), secrets=secrets)


def _delivery_target_orm(token: str) -> DeliveryTarget | None:
    from secrets_vault.models import Secret

    endpoint = (
        WebhookEndpoint.objects.select_related("workflow", "workflow__owner", "workflow__current_version")
        .filter(token=token, is_active=True, workflow__is_active=True)
        .first()
    )
    if endpoint is None:
        return None
    rows = {s.pk: s for s in endpoint.signing_secrets.all()}
    names = [n for n in endpoint.secret_names if isinstance(n, str)] if isinstance(endpoint.secret_names, list) else []
    if names:
        rows.update({s.pk: s for s in Secret.objects.filter(owner_id=endpoint.workflow.owner_id, name__in=names)})
    secrets = [
        SigningRow(s.pk, s.owner_id, s.name, bytes(s.ciphertext), bytes(s.nonce), bytes(s.wrapped_key), s.key_id)
        for _, s in sorted(rows.items())
    ]
    return DeliveryTarget(endpoint=endpoint, secrets=secrets)
