"""Reads for triggers, always scoped to the owner."""

from __future__ import annotations

import uuid
from typing import Any

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
