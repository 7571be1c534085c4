"""Entry points for worker processes in resilience tests (spawned, each with its own DB connection).

Each child configures Django on the test database itself (spawn: no sockets
or connections inherited), waits on a barrier so the calls really race, and
reports what happened through a queue.
"""

from __future__ import annotations

import os
import time
from typing import Any


def setup_django(db_name: str, env: dict[str, str] | None = None) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "zyra.settings.test"
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db_name}"
    os.environ.update(env or {})
    import django

    django.setup()


def call_once(db_name: str, env: dict[str, str], url: str, service: str, timeout: float, barrier: Any, out: Any) -> None:
    """One outbound call after the barrier: ('called', status) | ('deferred', reason, until_ts) | ('error', code)."""
    setup_django(db_name, env)
    from executions.nodes.base import Defer, NodeError
    from executions.resilience import outbound

    barrier.wait(timeout=60)
    try:
        response = outbound.request(None, "GET", url, service=service, timeout=timeout)
        out.put(("called", response.status, os.getpid()))
    except Defer as d:
        out.put(("deferred", d.reason, d.until.timestamp()))
    except NodeError as e:
        out.put(("error", e.code, e.message))


def call_until_done(
    db_name: str,
    env: dict[str, str],
    url: str,
    service: str,
    counter: Any,
    total: int,
    barrier: Any,
    out: Any,
    deadline_s: float,
    go: Any = None,
) -> None:
    """Take jobs from a shared counter; honour every Defer by waiting until its time, like the engine would.

    Reports ('done', n_calls, defers_by_reason) at the end.
    """
    setup_django(db_name, env)
    from executions.nodes.base import Defer
    from executions.resilience import outbound

    barrier.wait(timeout=60)
    if go is not None:
        go.wait(timeout=60)  # the test sets something up after every worker is ready
    deadline = time.monotonic() + deadline_s
    done = 0
    defers: dict[str, int] = {}
    first_defer: dict[str, float] = {}
    while time.monotonic() < deadline:
        with counter.get_lock():
            if counter.value >= total:
                break
            counter.value += 1
        while time.monotonic() < deadline:
            try:
                response = outbound.request(None, "GET", url, service=service, timeout=5)
            except Defer as d:
                defers[d.reason] = defers.get(d.reason, 0) + 1
                first_defer.setdefault(d.reason, time.time())
                time.sleep(max(0.0, d.until.timestamp() - time.time()))
                continue
            if response.status == 429:
                continue  # the 429 itself: the block is set; our next try is deferred
            done += 1
            break
    out.put(("done", done, defers, first_defer))
