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

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

EXEMPT_PREFIXES = ("/hooks/",)


def _too_large(cap: int) -> JsonResponse:
    message = f"The request body is larger than {cap} bytes."
    return JsonResponse(
        {"error": {"code": "body_too_large", "message": message, "details": [{"path": "", "code": "body_too_large", "message": message}]}},
        status=413,
    )


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if cap is not None and not request.path.startswith(EXEMPT_PREFIXES):
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
            if declared > cap:
                return _too_large(cap)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            return _too_large(int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0))
        return None
