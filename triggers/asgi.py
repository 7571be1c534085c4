"""``POST /hooks/{token}/`` answered before Django's request cycle (ASGI middleware).

Django under ASGI builds a request object, spools the body, runs eight
middleware and the view in a fresh thread, which then hands the delivery to
the webhook pool's thread: most of a delivery's CPU outside the database
work. Here the delivery is parsed on the event loop and goes to the pool
(``triggers.intake``) in one hop; the steps, their order and the answers are
the view's.

Only a request this path can answer exactly as Django would is taken: POST to
``/hooks/<token>/``, a Host that ``ALLOWED_HOSTS`` accepts, and no HTTPS
redirect or HSTS configured. Anything else (another method, a bad Host, ...)
goes to Django unchanged. ``ZYRA_WEBHOOK_FAST_PATH=false`` turns it off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.datastructures import CaseInsensitiveMapping

from triggers import intake
from triggers.selectors import DeliveryTarget

log = logging.getLogger("triggers.asgi")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_PATH = re.compile(r"^/hooks/([^/]+)/$")  # the URL pattern's ``<str:token>/``
# Bodies up to this size are read before the first hop to the pool, so a
# delivery needs one hop; a larger (or larger declared) body is read only after
# the endpoint and its cap are known.
PREFETCH_BYTES = 64 * 1024


class _Disconnected(Exception):
    pass


def _allowed_host(headers: dict[str, str], scope: Scope) -> bool:
    """``HttpRequest.get_host()``'s check, without raising."""
    if settings.USE_X_FORWARDED_HOST and "x-forwarded-host" in headers:
        host = headers["x-forwarded-host"]
    elif "host" in headers:
        host = headers["host"]
    else:
        server = scope.get("server") or ("", "")
        host = f"{server[0]}:{server[1]}" if server[0] else ""
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _ = split_domain_port(host)
    return bool(domain and validate_host(domain, allowed))


def _applies(scope: Scope) -> str | None:
    """The token when this path answers the request, else None (Django does)."""
    if scope["type"] != "http" or scope.get("method") != "POST" or not settings.ZYRA_WEBHOOK_FAST_PATH:
        return None
    if settings.SECURE_SSL_REDIRECT or settings.SECURE_HSTS_SECONDS:
        return None  # SecurityMiddleware's redirect and header: leave them to Django
    path = scope["path"]
    root = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root) :]
    match = _PATH.match(path)
    return match.group(1) if match else None


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name = raw_name.decode("latin1").lower()
        value = raw_value.decode("latin1")
        # Repeated headers are joined as Django's ASGIRequest does.
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


def _security_headers() -> list[tuple[bytes, bytes]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add to a plain HTTP JSON response."""
    out = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        out.append((b"x-content-type-options", b"nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        value = ",".join(v.strip() for v in policy.split(",")) if isinstance(policy, str) else ",".join(policy)
        out.append((b"referrer-policy", value.encode()))
    coop = settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
    if coop:
        out.append((b"cross-origin-opener-policy", coop.encode()))
    out.append((b"x-frame-options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper().encode()))
    return out


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """(body so far, complete): stops once more than ``limit`` bytes have arrived."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
            size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


def _first_step(token: str, headers: Any, content_length: str | None, body: bytes | None) -> DeliveryTarget | intake.Outcome:
    """In a pool thread: the checks before the body, then (when the body is already read) the rest."""
    opened = intake.open_delivery(token, content_length)
    if isinstance(opened, intake.Outcome) or body is None:
        return opened
    return intake.receive_delivery(opened, headers, headers.get("content-type", ""), body)


class WebhookIntake:
    """ASGI middleware in front of the Django application."""

    def __init__(self, app: Any) -> None:
        self.app: App = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _applies(scope)
        if token is None:
            await self.app(scope, receive, send)
            return
        raw = _headers(scope)
        if not _allowed_host(raw, scope):
            await self.app(scope, receive, send)  # Django answers 400 DisallowedHost
            return
        try:
            outcome = await self._deliver(token, raw, receive)
        except _Disconnected:
            return  # nothing was queued: the sender saw no answer and will retry
        except Exception:
            log.exception("triggers.webhook_intake_failed")
            outcome = intake.server_error()
        await self._answer(send, outcome)

    async def _deliver(self, token: str, raw: dict[str, str], receive: Receive) -> intake.Outcome:
        headers = CaseInsensitiveMapping(raw)
        content_length = raw.get("content-length")
        body: bytes | None = None
        if content_length is None or (content_length.isdigit() and int(content_length) <= PREFETCH_BYTES):
            prefetched, complete = await _read(receive, PREFETCH_BYTES)
            body = prefetched if complete else None
        else:
            prefetched = b""
        pool = intake.pool(settings.ZYRA_WEBHOOK_CONCURRENCY, settings.ZYRA_WEBHOOK_CONCURRENCY * 32)
        if not pool.enter():
            return intake.busy()
        try:
            loop = asyncio.get_running_loop()
            result = await asyncio.wrap_future(pool.submit(_first_step, token, headers, content_length, body), loop=loop)
            if isinstance(result, intake.Outcome):
                return result
            # A large body: read at most cap + 1 bytes now that the cap is known.
            cap = result.endpoint.max_body_bytes
            rest, _ = await _read(receive, cap - len(prefetched)) if len(prefetched) <= cap else (b"", True)
            fut = pool.submit(intake.receive_delivery, result, headers, raw.get("content-type", ""), prefetched + rest)
            return await asyncio.wrap_future(fut, loop=loop)
        finally:
            pool.leave()

    @staticmethod
    async def _answer(send: Send, outcome: intake.Outcome) -> None:
        # JsonResponse's encoding (json.dumps defaults), so the bytes match the view's.
        content = json.dumps(outcome.body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        headers += [(k.lower().encode("latin1"), v.encode("latin1")) for k, v in outcome.headers.items()]
        headers += _security_headers()
        await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
