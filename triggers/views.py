"""``POST /hooks/{token}/``: the public webhook receiver. Thin: checks order and the HTTP mapping."""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from triggers import services
from triggers.models import WebhookEndpoint

log = logging.getLogger("triggers.views")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")  # token_urlsafe alphabet; anything else never reaches the DB


def _error(status: int, code: str, message: str, path: str = "", headers: dict[str, str] | None = None) -> JsonResponse:
    body = {"error": {"code": code, "message": message, "details": [{"path": path, "code": code, "message": message}] if path else []}}
    response = JsonResponse(body, status=status)
    for key, value in (headers or {}).items():
        response[key] = value
    return response


@lru_cache(maxsize=1)
def _gate(size: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(max(1, size))


class _Pool:
    """Long-lived threads for deliveries under ASGI.

    Django runs every sync request of an ASGI server in a thread of its own, so
    a persistent DB connection is never reused and a burst opens as many
    connections as there are requests. Deliveries run here instead: a fixed
    number of threads, each keeping its connection (CONN_MAX_AGE applies), and
    a bounded backlog answered with 503 beyond it. Once a delivery is queued it
    is processed, whatever the client does, so a 503 never hides a started run.
    """

    def __init__(self, size: int, backlog: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=max(1, size), thread_name_prefix="zyra-webhook")
        self.backlog = backlog
        self.pending = 0
        self.lock = threading.Lock()

    def run(self, request: HttpRequest, token: str) -> JsonResponse | None:
        with self.lock:
            if self.pending >= self.backlog:
                return None
            self.pending += 1
        try:
            return self.executor.submit(self._job, request, token).result()
        finally:
            with self.lock:
                self.pending -= 1

    @staticmethod
    def _job(request: HttpRequest, token: str) -> JsonResponse:
        close_old_connections()
        try:
            return _hook(request, token)
        finally:
            close_old_connections()


@lru_cache(maxsize=1)
def _pool(size: int, backlog: int) -> _Pool:
    return _Pool(size, backlog)


def _busy() -> JsonResponse:
    return _error(503, "busy", "too many deliveries in progress; retry later", headers={"Retry-After": "5"})


@csrf_exempt
def hook(request: HttpRequest, token: str) -> JsonResponse:
    if request.method != "POST":
        return _error(405, "method_not_allowed", "use POST", headers={"Allow": "POST"})
    if isinstance(request, ASGIRequest):
        backlog = settings.ZYRA_WEBHOOK_CONCURRENCY * 32
        response = _pool(settings.ZYRA_WEBHOOK_CONCURRENCY, backlog).run(request, token)
        return response if response is not None else _busy()
    # WSGI servers reuse their threads (and so connections); only bound the concurrency.
    gate = _gate(settings.ZYRA_WEBHOOK_CONCURRENCY)
    if not gate.acquire(timeout=settings.ZYRA_WEBHOOK_QUEUE_TIMEOUT_S):
        return _busy()
    try:
        return _hook(request, token)
    finally:
        gate.release()


def _hook(request: HttpRequest, token: str) -> JsonResponse:
    endpoint = None
    if _TOKEN.match(token):
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
