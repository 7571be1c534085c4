"""``POST /hooks/{token}/`` through Django: thin, the steps and the HTTP mapping are in ``triggers.intake``.

Under an ASGI server ``triggers.asgi.WebhookIntake`` answers these requests
before Django (``ZYRA_WEBHOOK_FAST_PATH``); this view serves WSGI, the test
client, and ASGI when the fast path is off or does not apply.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from triggers import intake


def _response(outcome: intake.Outcome) -> JsonResponse:
    response = JsonResponse(outcome.body, status=outcome.status)
    for key, value in outcome.headers.items():
        response[key] = value
    return response


@lru_cache(maxsize=1)
def _gate(size: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(max(1, size))


@csrf_exempt
def hook(request: HttpRequest, token: str) -> JsonResponse:
    if request.method != "POST":
        return _response(intake.error(405, "method_not_allowed", "use POST", headers={"Allow": "POST"}))
    if isinstance(request, ASGIRequest):
        pool = intake.pool(settings.ZYRA_WEBHOOK_CONCURRENCY, settings.ZYRA_WEBHOOK_CONCURRENCY * 32)
        if not pool.enter():
            return _response(intake.busy())
        try:
            return _response(pool.submit(_hook, request, token).result())
        finally:
            pool.leave()
    # WSGI servers reuse their threads (and so connections); only bound the concurrency.
    gate = _gate(settings.ZYRA_WEBHOOK_CONCURRENCY)
    if not gate.acquire(timeout=settings.ZYRA_WEBHOOK_QUEUE_TIMEOUT_S):
        return _response(intake.busy())
    try:
        return _response(_hook(request, token))
    finally:
        gate.release()


def _hook(request: HttpRequest, token: str) -> intake.Outcome:
    opened = intake.open_delivery(token, request.META.get("CONTENT_LENGTH"))
    if isinstance(opened, intake.Outcome):
        return opened
    # Read at most cap + 1 bytes: a body without (or lying in) Content-Length is still bounded.
    body = request.read(opened.endpoint.max_body_bytes + 1)
    return intake.receive_delivery(opened, request.headers, request.META.get("CONTENT_TYPE", ""), body)
