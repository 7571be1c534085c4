"""Request body cap in the one error shape.

Django enforces ``DATA_UPLOAD_MAX_MEMORY_SIZE`` only when something reads
``request.body``/``request.POST``, raising ``RequestDataTooBig`` (a 400 HTML
page, or a 500 where a view does not expect it), and DRF's parsers read the
stream without any cap. This middleware answers an oversized declared body
with 413 and ``{"error": {"code": "body_too_large", ...}}`` before anything
reads it, and turns a late ``RequestDataTooBig`` into the same answer.

Webhook deliveries (``/hooks/``) are exempt: each endpoint has its own cap
(``WebhookEndpoint.max_body_bytes``), enforced by the view the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

EXEMPT_PREFIXES = ("/hooks/",)


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """The answer to a request whose declared body is too large or malformed (None: let it through)."""
    cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if cap is None or request.path.startswith(EXEMPT_PREFIXES):
        return None
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        declared = int(raw)
    except ValueError:
        message = "Content-Length is not a number."
        return JsonResponse(
            {
                "error": {
                    "code": "invalid_content_length",
                    "message": message,
                    "details": [{"path": "", "code": "invalid_content_length", "message": message}],
                }
            },
            status=400,
        )
    return _too_large(cap) if declared > cap else None


def _too_large(cap: int) -> JsonResponse:
    message = f"The request body is larger than {cap} bytes."
    return JsonResponse(
        {"error": {"code": "body_too_large", "message": message, "details": [{"path": "", "code": "body_too_large", "message": message}]}},
        status=413,
    )


class RequestSizeLimitMiddleware:
    """Sync and async: under ASGI every other middleware in the chain is async-capable, and a sync-only
    one here made each request hop to a thread for it, back to the event loop for the rest of the
    chain, and to a thread again for the view (two hops more per request: about a tenth of the API's
    CPU per run start)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        refused = _refusal(request)
        return refused if refused is not None else self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        refused = _refusal(request)
        return refused if refused is not None else await self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            return _too_large(int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0))
        return None
