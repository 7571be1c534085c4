"""Records when each event's transaction committed, for bench_ws's "commit to receipt" delay.

Imported into the bench's Celery worker (``-I bench.ws_commit_probe``) and
into its producer process. ``executions.broadcast.publish`` runs in the
transaction's ``on_commit``, so the time it is called is the commit time (the
event's own ``ts`` is taken earlier, inside the transaction). Appends
``run_id seq unix_time`` lines to ``$ZYRA_BENCH_COMMIT_LOG``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from executions import broadcast

_original = broadcast.publish
_lock = threading.Lock()


def _publish(events: list[dict[str, Any]]) -> None:
    now = time.time()
    path = os.environ.get("ZYRA_BENCH_COMMIT_LOG")
    if path:
        lines = "".join(f"{e['run_id']} {e['seq']} {now:.6f}\n" for e in events)
        with _lock, open(path, "a") as out:
            out.write(lines)
    _original(events)


broadcast.publish = _publish
