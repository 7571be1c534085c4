from __future__ import annotations

from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure
        checks["database"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


def not_found(request: HttpRequest, exception: Any = None) -> JsonResponse:
    return JsonResponse({"error": {"code": "not_found", "message": "Not found.", "details": []}}, status=404)


def server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"error": {"code": "server_error", "message": "Internal error.", "details": []}}, status=500)
