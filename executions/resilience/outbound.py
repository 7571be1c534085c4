"""The one way node handlers call out: rate limiter -> circuit breaker -> safe HTTP.

``request(ctx, method, url, ...)`` returns a ``Response`` for any HTTP
status (the handler decides what a status means, usually with
``raise_for_status``) and raises:

- ``Defer(reason="circuit_open")`` while the service's breaker is open (until
  it may half-open) or while another worker's probe is in flight;
- ``Defer(reason="rate_limited")`` with the exact wait the limiter computed;
- ``Defer(reason="upstream_429")`` while an upstream ``Retry-After`` blocks
  the service for every worker;
- ``NodeError`` with ``ssrf_blocked``, ``timeout``, ``connection``,
  ``response_too_large``, ``too_many_redirects`` or ``config``.

Order of checks, and why: the breaker's state is read first (one SELECT that
also brings the service's ``ServicePolicy``), so a call to a service whose
breaker is open is deferred without spending a rate-limit slot; then the
limiter takes its slot; then the breaker admits the call (in half-open: the
single probe lease); then the call; then its outcome is recorded.

Feature flags ``ZYRA_FEATURES["circuit_breaker"]`` / ``["rate_limit"]``
switch the breaker / limiter off. Storage failures of either fail open (see
``breaker`` and ``ratelimit`` docstrings).
"""

from __future__ import annotations

import json as jsonlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from executions.nodes.base import Defer, NodeContext, NodeError
from executions.resilience import safe_http
from executions.resilience.breaker import (
    Breaker,
    BreakerConfig,
    CircuitOpen,
    Outcome,
    Permit,
    ServiceState,
    service_state_load,
)
from executions.resilience.ratelimit import RateLimit, RateLimited, RateLimiter, upstream_block

log = logging.getLogger("executions.resilience")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}
BREAKER_FAILURE_CODES = frozenset({"timeout", "connection"})


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON when the response says JSON, else text
    elapsed_ms: float
    url: str = ""
    raw: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def as_output(self) -> dict[str, Any]:
        return {"status": self.status, "headers": dict(self.headers), "body": self.body}


def service_key(url: str, service: str | None = None) -> str:
    """The breaker / limiter key: the node's ``service`` override, else ``scheme://host:port``."""
    if service and str(service).strip():
        return str(service).strip()[:300]
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except (ValueError, AttributeError) as exc:
        raise NodeError("config", f"malformed URL: {exc}") from None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"[:300]


def parse_body(content: bytes, content_type: str) -> Any:
    ctype = content_type.lower()
    charset = "utf-8"
    if "charset=" in ctype:
        charset = ctype.split("charset=", 1)[1].split(";", 1)[0].strip().strip('"') or "utf-8"
    try:
        text = content.decode(charset, errors="replace")
    except LookupError:
        text = content.decode("utf-8", errors="replace")
    mime = ctype.split(";", 1)[0].strip()
    if mime == "application/json" or mime.endswith("+json"):
        try:
            return jsonlib.loads(text) if text.strip() else None
        except ValueError:
            return text
    return text


def raise_for_status(response: Response, *, host: str = "") -> None:
    """Raise the classified NodeError of a non-2xx answer (5xx/429 retryable; 401/403 auth; 4xx not)."""
    if response.ok or 300 <= response.status < 400:
        return
    error = safe_http.classify_status(response.status, response.headers, host=host)
    if error is not None:
        snippet = response.body if isinstance(response.body, (dict, list)) else str(response.body)[:500]
        error.details = {**(error.details or {}), "body": snippet}
        raise error


def _defer(ctx: NodeContext | None, until: datetime, reason: str, message: str) -> Defer:
    floor = timezone.now() + timedelta(milliseconds=50)
    return Defer(max(until, floor), reason, state=ctx.state if ctx is not None else None, message=message)


def _side_effecting(ctx: NodeContext | None, method: str) -> bool:
    if ctx is None or method in SAFE_METHODS:
        return False
    from workflows.registry import UnknownNodeType, node_types

    try:
        return node_types.get(ctx.node_type).side_effects
    except UnknownNodeType:
        return False


@dataclass
class Admission:
    """A call let through by the limiter and the breaker; ``settle`` reports how it went (once)."""

    key: str
    breaker: Breaker | None
    permit: Permit | None
    limiter_on: bool
    run_id: str | None
    node_id: str
    settled: bool = False

    def settle(self, outcome: Outcome, *, duration_s: float = 0.0, error: str = "") -> None:
        if self.settled or self.breaker is None or self.permit is None:
            return
        self.settled = True
        self.breaker.record_later(self.permit, outcome, duration_s=duration_s, error=error, run_id=self.run_id, node_id=self.node_id)


def admit(ctx: NodeContext | None, key: str, call_timeout_s: float) -> Admission:
    """Pass the rate limiter and the circuit breaker for one call to ``key``, or raise Defer.

    For callers that are not HTTP (EMAIL's SMTP connection): they call
    ``admit`` before and ``Admission.settle`` after their own I/O.
    """
    features = settings.ZYRA_FEATURES
    use_breaker = bool(features.get("circuit_breaker", True))
    use_limiter = bool(features.get("rate_limit", True))
    run_id = ctx.run_id if ctx is not None else None
    node_id = ctx.node_id if ctx is not None else ""

    state: ServiceState | None = None
    if use_breaker or use_limiter:
        try:
            state = service_state_load(key=key)
        except (OperationalError, InterfaceError) as exc:
            log.error(
                "executions.breaker_storage_failed",
                extra={"op": "load", "service": key, "error": f"{type(exc).__name__}: {exc}", "policy": "fail_open"},
            )
    policy = state.policy if state is not None else None
    breaker = Breaker(BreakerConfig.from_settings(policy)) if use_breaker else None
    snapshot = state.breaker if state is not None else None

    permit: Permit | None = None
    try:
        if breaker is not None:
            breaker.check(key, snapshot)
        if use_limiter:
            limit = RateLimit.from_settings(policy.rate_per_s if policy else None, policy.burst if policy else None)
            RateLimiter(limit).acquire(key)
        if breaker is not None:
            permit = breaker.acquire(key, snapshot, call_timeout_s=call_timeout_s, run_id=run_id, node_id=node_id)
    except CircuitOpen as exc:
        raise _defer(ctx, exc.until, "circuit_open", f"circuit for {key} is {exc.state}") from None
    except RateLimited as exc:
        until = timezone.now() + timedelta(seconds=exc.wait_s)
        raise _defer(ctx, until, exc.reason, f"{key}: {exc.reason}, retry in {exc.wait_s:.3f}s") from None
    return Admission(key=key, breaker=breaker, permit=permit, limiter_on=use_limiter, run_id=run_id, node_id=node_id)


def time_budget(ctx: NodeContext | None, timeout: float | None) -> float:
    """The call's timeout: the caller's (or the default), never past the node's deadline."""
    budget = float(timeout) if timeout is not None else float(settings.ZYRA_HTTP_TIMEOUT_S)
    if ctx is not None:
        remaining = ctx.remaining_s()
        if remaining <= 0:
            raise NodeError("timeout", "no time left for the call before the node's deadline")
        budget = min(budget, remaining)
    return budget


def request(
    ctx: NodeContext | None,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    content: bytes | str | None = None,
    service: str | None = None,
    timeout: float | None = None,
    follow_redirects: bool = True,
    has_json: bool | None = None,
) -> Response:
    method = (method or "GET").upper()
    if not isinstance(url, str):
        raise NodeError("config", "URL must be a string")
    # Refuse forbidden schemes and literal addresses before touching Redis or the DB.
    safe_http.precheck(url)
    key = service_key(url, service)

    budget = time_budget(ctx, timeout)
    admission = admit(ctx, key, budget)
    send_headers = dict(headers or {})
    if _side_effecting(ctx, method):
        header = settings.ZYRA_IDEMPOTENCY_HEADER
        if ctx is not None and not any(k.lower() == header.lower() for k in send_headers):
            send_headers[header] = ctx.idempotency_key

    started = time.monotonic()
    result: safe_http.HttpResult | None = None
    error: NodeError | None = None
    try:
        result = safe_http.fetch(
            method,
            url,
            headers=send_headers,
            params=params,
            json=json,
            content=content,
            timeout_s=budget,
            follow_redirects=follow_redirects,
            has_json=has_json,
        )
    except NodeError as exc:
        error = exc
    except BaseException:
        # A bug or an interruption: never keep a half-open probe lease we cannot report on.
        admission.settle("ignored")
        raise
    duration = time.monotonic() - started

    if error is not None:
        outcome: Outcome = "failure" if error.code in BREAKER_FAILURE_CODES else "ignored"
        if error.code == "response_too_large":
            outcome = "success"  # the service answered; its answer is the problem
        admission.settle(outcome, duration_s=duration, error=f"{error.code}: {error.message}")
    else:
        assert result is not None
        failed = result.status >= 500
        admission.settle("failure" if failed else "success", duration_s=duration, error=f"HTTP {result.status}" if failed else "")

    if error is not None:
        raise error
    assert result is not None
    if result.status == 429 and admission.limiter_on:
        wait = safe_http.parse_retry_after(result.headers.get("retry-after"))
        if wait is not None and wait > 0:
            upstream_block(key=key, seconds=wait)
    return Response(
        status=result.status,
        headers=result.headers,
        body=parse_body(result.content, result.content_type),
        elapsed_ms=result.elapsed_ms,
        url=result.url,
        raw=result.content,
    )
