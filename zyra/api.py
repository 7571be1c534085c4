"""Shared API plumbing: pagination, the one error shape, JSON body helpers."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf_exc
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from zyra.errors import ErrorDetail, ZyraError, pointer

log = logging.getLogger("zyra.api")


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def _flatten(data: Any, path: list[str]) -> list[ErrorDetail]:
    out: list[ErrorDetail] = []
    if isinstance(data, dict):
        for key, value in data.items():
            sub = path if key == "non_field_errors" else [*path, str(key)]
            out.extend(_flatten(value, sub))
    elif isinstance(data, list):
        if all(isinstance(v, (str, drf_exc.ErrorDetail)) for v in data):
            for v in data:
                code = getattr(v, "code", "invalid") or "invalid"
                out.append(ErrorDetail(pointer(*path), str(code), str(v)))
        else:
            for i, v in enumerate(data):
                out.extend(_flatten(v, [*path, str(i)]))
    else:
        code = getattr(data, "code", "invalid") or "invalid"
        out.append(ErrorDetail(pointer(*path), str(code), str(data)))
    return out


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ZyraError):
        return Response(exc.as_dict(), status=exc.status)
    if isinstance(exc, Http404):
        return Response(ZyraError("not_found", "Not found.", [], 404).as_dict(), status=404)
    if isinstance(exc, PermissionDenied):
        exc = drf_exc.PermissionDenied()
    if isinstance(exc, drf_exc.ValidationError):
        details = _flatten(exc.detail, [])
        err = ZyraError("validation_error", "The request is invalid.", details, 400)
        return Response(err.as_dict(), status=400)
    if isinstance(exc, drf_exc.ParseError):
        err = ZyraError(
            "malformed_json", f"The body is not valid JSON: {exc.detail}", [ErrorDetail("", "malformed_json", str(exc.detail))], 400
        )
        return Response(err.as_dict(), status=400)
    if isinstance(exc, drf_exc.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        message = exc.detail if isinstance(exc.detail, str) else str(exc.default_detail)
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        if getattr(exc, "wait", None) is not None:
            headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        err = ZyraError(str(code), str(message), [], exc.status_code)
        return Response(err.as_dict(), status=exc.status_code, headers=headers)
    return None


def error_response(code: str, message: str, status: int, details: list[ErrorDetail] | None = None) -> Response:
    return Response(ZyraError(code, message, details or [], status).as_dict(), status=status)
