"""Webhook delivery steps shared by the Django view and the ASGI fast path.

Transport-neutral: each step takes plain values and returns an ``Outcome``
(status, JSON body, extra headers) or the target to go on with. The HTTP
mapping of every rejection lives here once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from django.db import close_old_connections, connections

from triggers import services
from triggers.selectors import DeliveryTarget
from zyra.errors import ErrorDetail, ZyraError

log = logging.getLogger("triggers.intake")
T = TypeVar("T")


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, code: str, message: str, path: str = "", headers: dict[str, str] | None = None) -> Outcome:
    details = [ErrorDetail(path, code, message)] if path else []
    return Outcome(status, ZyraError(code, message, details, status).as_dict(), dict(headers or {}))


def busy() -> Outcome:
    return error(503, "busy", "too many deliveries in progress; retry later", headers={"Retry-After": "5"})


def server_error() -> Outcome:
    return error(500, "server_error", "Internal error.")  # zyra.health.server_error's answer


def _rejected(exc: services.Rejected, target: DeliveryTarget | None) -> Outcome:
    if target is not None:
        log.info("triggers.webhook_rejected endpoint_id=%s status=%s code=%s", target.endpoint.pk, exc.status, exc.code)
    return error(exc.status, exc.code, exc.message, exc.path, exc.headers)


def open_delivery(token: str, content_length: str | None) -> DeliveryTarget | Outcome:
    """Token (404), declared size (400/413) and rate limit (429): everything checked before the body is read."""
    target = services.webhook_target(token=token)
    if target is None:
        return error(404, "not_found", "Not found.")
    try:
        services.webhook_admit(target=target, content_length=content_length)
    except services.Rejected as exc:
        return _rejected(exc, target)
    return target


def receive_delivery(target: DeliveryTarget, headers: Any, content_type: str, body: bytes) -> Outcome:
    """Body size (413), signature (401), media type (415), JSON (400), replay (409), then 202 ``{"run_id"}``."""
    try:
        run_id = services.webhook_receive(target=target, headers=headers, content_type=content_type, body=body)
    except services.Rejected as exc:
        return _rejected(exc, target)
    return Outcome(202, {"run_id": str(run_id)})


class Pool:
    """Long-lived threads for deliveries under ASGI.

    An ASGI server runs every sync request of Django in a thread of its own, so
    a persistent DB connection is never reused and a burst opens as many
    connections as there are requests. Deliveries run here instead: a fixed
    number of threads, each keeping its connection (CONN_MAX_AGE applies), and
    a bounded backlog answered with 503 beyond it. Once a delivery is queued it
    is processed, whatever the client does, so a 503 never hides a started run.
    """

    def __init__(self, size: int, backlog: int) -> None:
        self.size = max(1, size)
        self.executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="zyra-webhook")
        self.backlog = backlog
        self.pending = 0
        self.lock = threading.Lock()

    def enter(self) -> bool:
        with self.lock:
            if self.pending >= self.backlog:
                return False
            self.pending += 1
            return True

    def leave(self) -> None:
        with self.lock:
            self.pending -= 1

    def submit(self, fn: Callable[..., T], *args: Any) -> Any:
        return self.executor.submit(_in_thread, fn, *args)

    def close_connections(self) -> None:
        """Close every pool thread's database connections (each thread takes one of these jobs)."""
        barrier = threading.Barrier(self.size)

        def close() -> None:
            barrier.wait(timeout=30)
            connections.close_all()

        for job in [self.executor.submit(close) for _ in range(self.size)]:
            job.result()


def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    # What Django's request_started/request_finished signals do around a request:
    # drop a connection that is broken or past CONN_MAX_AGE.
    close_old_connections()
    try:
        return fn(*args)
    finally:
        close_old_connections()


@lru_cache(maxsize=1)
def pool(size: int, backlog: int) -> Pool:
    return Pool(size, backlog)
