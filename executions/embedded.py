"""The embedded mode: a Celery worker in a thread of this process, on kombu's memory transport.

Used by ``run_workflow`` and the ASGI server when no broker is configured, so a
first run needs no services. The sweeper runs in a thread too.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings

log = logging.getLogger("executions.embedded")
_started = threading.Event()
_lock = threading.Lock()


def start(concurrency: int = 8) -> None:
    """Start the in-process worker and sweeper once (no-op when already running)."""
    with _lock:
        if _started.is_set():
            return
        from zyra.celery import app

        worker = app.WorkController(
            pool_cls="threads",
            concurrency=concurrency,
            queues=["io", "cpu", "sweep"],
            loglevel="WARNING",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            hostname="embedded@localhost",
        )
        thread = threading.Thread(target=worker.start, name="zyra-embedded-worker", daemon=True)
        thread.start()
        sweeper = threading.Thread(target=_sweep_loop, name="zyra-embedded-sweeper", daemon=True)
        sweeper.start()
        _started.set()
        log.info("executions.embedded_started", extra={"concurrency": concurrency})


def _sweep_loop() -> None:
    from django.db import close_old_connections

    from executions.services import sweep

    beat_interval: Any = settings.CELERY_BEAT_SCHEDULE["zyra-sweep"]["schedule"]
    interval = float(beat_interval)
    while True:
        time.sleep(interval)
        try:
            sweep()
        except Exception:  # noqa: BLE001 - keep sweeping; the error is logged
            log.exception("executions.embedded_sweep_failed")
        finally:
            close_old_connections()


def is_embedded() -> bool:
    return bool(getattr(settings, "ZYRA_EMBEDDED_BROKER", False))


def ensure_started(**kwargs: Any) -> None:
    if is_embedded():
        start(**kwargs)
