"""A separate producer process: records events for a run through the engine's event service.

python produce_events.py <run_id> <count> <interval_s>
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zyra.settings.test")
sys.path.insert(0, os.getcwd())

import django  # noqa: E402

django.setup()

from executions.broadcast import flush  # noqa: E402
from executions.events import event_record  # noqa: E402


def main() -> None:
    run_id, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    for i in range(count):
        event_record(run_id=run_id, type="node.started", node_id=f"n{i}", data={"i": i, "status": "running"})
        time.sleep(interval)
    flush(10)
    print(json.dumps({"pid": os.getpid(), "count": count}))


if __name__ == "__main__":
    main()
