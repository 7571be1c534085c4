"""``/api/webhooks/`` and ``/api/schedules/``: owners manage their trigger endpoints."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from triggers import selectors, services
from triggers.models import Schedule, SigningScheme, WebhookEndpoint
from triggers.schemas import ScheduleOut, SigningSecretCreated, SigningSecretIn, WebhookOut, WebhookPatch
from zyra.api import Pagination
from zyra.errors import ErrorDetail, ZyraError


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def endpoint_json(endpoint: WebhookEndpoint, request: Request | None = None) -> dict[str, Any]:
    return {
        "id": str(endpoint.pk),
        "workflow_id": str(endpoint.workflow_id),
        "node_id": endpoint.node_id,
        "token": endpoint.token,
        "path": endpoint.path,
        "url": request.build_absolute_uri(endpoint.path) if request is not None else endpoint.path,
        "signing_scheme": endpoint.signing_scheme,
        "unsigned": endpoint.signing_scheme == SigningScheme.UNSIGNED,
        "signing_secrets": [
            {"id": s.pk, "name": s.name, "fingerprint": s.short_fingerprint, "created_at": _iso(s.created_at)}
            for s in endpoint.signing_secrets.all()
        ],
        "secret_names": list(endpoint.secret_names),
        "max_body_bytes": endpoint.max_body_bytes,
        "rate_limit_per_s": endpoint.rate_limit_per_s,
        "is_active": endpoint.is_active,
        "created_at": _iso(endpoint.created_at),
        "updated_at": _iso(endpoint.updated_at),
    }


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    return {
        "id": schedule.pk,
        "workflow_id": str(schedule.workflow_id),
        "node_id": schedule.node_id,
        "cron": schedule.cron or None,
        "interval_s": schedule.interval_s,
        "timezone": schedule.timezone,
        "catch_up": schedule.catch_up,
        "enabled": schedule.enabled,
        "next_run_at": _iso(schedule.next_run_at),
        "last_run_at": _iso(schedule.last_run_at),
        "last_run_id": str(schedule.last_run_id) if schedule.last_run_id else None,
        "last_error": schedule.last_error or None,
    }


def _object(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ZyraError("validation_error", "The body must be a JSON object.", [ErrorDetail("", "invalid_type", "expected an object")])
    return request.data


class WebhookListView(APIView):
    @extend_schema(parameters=[OpenApiParameter("workflow", str, description="only this workflow's")], responses=WebhookOut(many=True))
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        qs = selectors.webhook_endpoint_list(owner=request.user, workflow_id=request.query_params.get("workflow"))
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([endpoint_json(e, request) for e in page or []])


class WebhookDetailView(APIView):
    @extend_schema(responses=WebhookOut)
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(endpoint_json(selectors.webhook_endpoint_get(owner=request.user, endpoint_id=endpoint_id), request))

    @extend_schema(request=WebhookPatch, responses=WebhookOut)
    def patch(self, request: Request, endpoint_id: str) -> Response:
        endpoint = selectors.webhook_endpoint_get(owner=request.user, endpoint_id=endpoint_id)
        endpoint = services.webhook_endpoint_update(endpoint=endpoint, data=_object(request))
        return Response(endpoint_json(endpoint, request))


class WebhookRegenerateTokenView(APIView):
    @extend_schema(request=None, responses=WebhookOut)
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = selectors.webhook_endpoint_get(owner=request.user, endpoint_id=endpoint_id)
        return Response(endpoint_json(services.webhook_endpoint_regenerate_token(endpoint=endpoint), request))


class WebhookSigningSecretsView(APIView):
    @extend_schema(request=SigningSecretIn, responses={201: SigningSecretCreated})
    def post(self, request: Request, endpoint_id: str) -> Response:
        """``{}`` generates a secret (returned once, in ``secret``); ``{"secret": "..."}`` stores the given one."""
        endpoint = selectors.webhook_endpoint_get(owner=request.user, endpoint_id=endpoint_id)
        data = _object(request)
        unknown = [k for k in data if k != "secret"]
        if unknown:
            raise ZyraError(
                "validation_error", "The request is invalid.", [ErrorDetail(f"/{k}", "unknown_field", "unknown field") for k in unknown]
            )
        value = data.get("secret")
        if value is not None and not isinstance(value, str):
            raise ZyraError("validation_error", "The request is invalid.", [ErrorDetail("/secret", "invalid_type", "a string")])
        secret, generated = services.webhook_signing_secret_add(endpoint=endpoint, value=value)
        body: dict[str, Any] = {"id": secret.pk, "name": secret.name, "fingerprint": secret.short_fingerprint}
        if generated is not None:
            body["secret"] = generated  # shown once: the sender needs it
        return Response(body, status=201)


class WebhookSigningSecretDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, endpoint_id: str, secret_id: int) -> Response:
        endpoint = selectors.webhook_endpoint_get(owner=request.user, endpoint_id=endpoint_id)
        services.webhook_signing_secret_remove(endpoint=endpoint, secret_id=secret_id)
        return Response(status=204)


class ScheduleListView(APIView):
    @extend_schema(parameters=[OpenApiParameter("workflow", str, description="only this workflow's")], responses=ScheduleOut(many=True))
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        qs = selectors.schedule_list(owner=request.user, workflow_id=request.query_params.get("workflow"))
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([schedule_json(s) for s in page or []])
