"""``POST /hooks/{token}/``: the public webhook receiver. Thin: checks order and the HTTP mapping."""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from triggers import services
from triggers.models import WebhookEndpoint

log = logging.getLogger("triggers.views")


def _error(status: int, code: str, message: str, path: str = "", headers: dict[str, str] | None = None) -> JsonResponse:
    body = {"error": {"code": code, "message": message, "details": [{"path": path, "code": code, "message": message}] if path else []}}
    response = JsonResponse(body, status=status)
    for key, value in (headers or {}).items():
        response[key] = value
    return response


@lru_cache(maxsize=1)
def _gate(size: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(max(1, size))


@csrf_exempt
def hook(request: HttpRequest, token: str) -> JsonResponse:
    if request.method != "POST":
        return _error(405, "method_not_allowed", "use POST", headers={"Allow": "POST"})
    # Under ASGI every sync request gets its own thread and DB connection; without
    # a bound, a burst opens more connections than PostgreSQL allows (500s).
    gate = _gate(settings.ZYRA_WEBHOOK_CONCURRENCY)
    if not gate.acquire(timeout=settings.ZYRA_WEBHOOK_QUEUE_TIMEOUT_S):
        return _error(503, "busy", "too many deliveries in progress; retry later", headers={"Retry-After": "5"})
    try:
        return _hook(request, token)
    finally:
        gate.release()


def _hook(request: HttpRequest, token: str) -> JsonResponse:
    endpoint = None
    if 20 <= len(token) <= 64:
        endpoint = (
            WebhookEndpoint.objects.select_related("workflow", "workflow__owner", "workflow__current_version")
            .filter(token=token, is_active=True, workflow__is_active=True)
            .first()
        )
    if endpoint is None:
        return _error(404, "not_found", "Not found.")
    cap = endpoint.max_body_bytes
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _error(400, "invalid_content_length", "Content-Length is not a number")
    if declared > cap:
        return _error(413, "body_too_large", f"the body is over this endpoint's cap of {cap} bytes")
    try:
        services.webhook_check_rate(endpoint=endpoint)
        # Read at most cap + 1 bytes: a body without (or lying in) Content-Length is still bounded.
        body = request.read(cap + 1)
        if len(body) > cap:
            return _error(413, "body_too_large", f"the body is over this endpoint's cap of {cap} bytes")
        run = services.webhook_deliver(
            endpoint=endpoint, headers=request.headers, content_type=request.META.get("CONTENT_TYPE", ""), body=body
        )
    except services.Rejected as exc:
        log.info("triggers.webhook_rejected endpoint_id=%s status=%s code=%s", endpoint.pk, exc.status, exc.code)
        return _error(exc.status, exc.code, exc.message, exc.path, exc.headers)
    return JsonResponse({"run_id": str(run.pk)}, status=202)
