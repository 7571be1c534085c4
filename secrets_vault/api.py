"""``/api/secrets/``: values are write-only; responses carry metadata and a fingerprint."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from secrets_vault import selectors, services
from secrets_vault.models import Secret
from secrets_vault.schemas import SecretCreate, SecretOut, SecretPatch
from zyra.api import Pagination
from zyra.errors import ErrorDetail, ZyraError

WRITABLE = {"name", "value", "description"}


def secret_json(secret: Secret) -> dict[str, Any]:
    return {
        "id": secret.pk,
        "name": secret.name,
        "description": secret.description,
        "fingerprint": secret.short_fingerprint,
        "key_id": secret.key_id,
        "created_at": secret.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": secret.updated_at.isoformat().replace("+00:00", "Z"),
        "last_used_at": secret.last_used_at.isoformat().replace("+00:00", "Z") if secret.last_used_at else None,
    }


def _body(request: Request, *, required: set[str]) -> dict[str, Any]:
    data = request.data
    if not isinstance(data, dict):
        raise ZyraError("validation_error", "The body must be a JSON object.", [ErrorDetail("", "invalid_type", "expected an object")])
    details = [ErrorDetail(f"/{k}", "unknown_field", "unknown field") for k in data if k not in WRITABLE]
    details += [ErrorDetail(f"/{k}", "required", "this field is required") for k in sorted(required) if k not in data]
    if details:
        raise ZyraError("validation_error", "The request is invalid.", details)
    return data


class SecretListView(APIView):
    @extend_schema(responses=SecretOut(many=True))
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        page = paginator.paginate_queryset(selectors.secret_list(owner=request.user), request, view=self)
        return paginator.get_paginated_response([secret_json(s) for s in page or []])

    @extend_schema(request=SecretCreate, responses={201: SecretOut})
    def post(self, request: Request) -> Response:
        data = _body(request, required={"name", "value"})
        secret = services.secret_create(owner=request.user, name=data["name"], value=data["value"], description=data.get("description", ""))
        return Response(secret_json(secret), status=201)


class SecretDetailView(APIView):
    @extend_schema(responses=SecretOut)
    def get(self, request: Request, ref: str) -> Response:
        return Response(secret_json(selectors.secret_get(owner=request.user, ref=ref)))

    @extend_schema(request=SecretCreate, responses=SecretOut)
    def put(self, request: Request, ref: str) -> Response:
        secret = selectors.secret_get(owner=request.user, ref=ref)
        data = _body(request, required={"value"})
        secret = services.secret_update(secret=secret, name=data.get("name"), value=data["value"], description=data.get("description", ""))
        return Response(secret_json(secret))

    @extend_schema(request=SecretPatch, responses=SecretOut)
    def patch(self, request: Request, ref: str) -> Response:
        secret = selectors.secret_get(owner=request.user, ref=ref)
        data = _body(request, required=set())
        for key in WRITABLE:
            if key in data and data[key] is None:
                raise ZyraError("validation_error", "The request is invalid.", [ErrorDetail(f"/{key}", "null", "may not be null")])
        secret = services.secret_update(secret=secret, name=data.get("name"), value=data.get("value"), description=data.get("description"))
        return Response(secret_json(secret))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, ref: str) -> Response:
        services.secret_delete(secret=selectors.secret_get(owner=request.user, ref=ref))
        return Response(status=204)
