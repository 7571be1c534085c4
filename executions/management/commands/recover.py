"""Run the sweeper by hand: re-queue lost attempts, re-send lost messages, wake due nodes.

    python manage.py recover            # one sweep, prints its report as JSON
    python manage.py recover --loop     # sweep every --interval seconds until interrupted

Celery beat already runs the same sweep every ZYRA_SWEEP_INTERVAL_S seconds
(``zyra-sweep``); this command is for operators without beat, or who want
to see what a sweep does. It is safe next to beat and other sweepers: each run
is swept under its row lock, taken with SKIP LOCKED.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from executions.services import sweep


class Command(BaseCommand):
    help = "Recover runs: re-queue nodes whose worker was lost, re-send lost messages, wake deferred nodes (one sweep, or --loop)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep sweeping until interrupted")
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="seconds between sweeps with --loop (default: the beat interval, ZYRA_SWEEP_INTERVAL_S)",
        )
        parser.add_argument("--limit", type=int, default=500, help="runs examined per sweep")

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"]
        if interval is None:
            beat_interval: Any = settings.CELERY_BEAT_SCHEDULE["zyra-sweep"]["schedule"]
            interval = float(beat_interval)
        if interval <= 0:
            interval = 1.0
        limit = max(1, int(options["limit"]))
        if not options["loop"]:
            self.stdout.write(json.dumps(sweep(limit=limit).as_dict()))
            return
        self.stderr.write(f"recover: sweeping every {interval:g} s until interrupted")
        self.stderr.flush()
        try:
            while True:
                try:
                    report = sweep(limit=limit).as_dict()
                except Exception as exc:  # noqa: BLE001 - the database may be restarting: report and sweep again
                    self.stderr.write(json.dumps({"error": f"{type(exc).__name__}: {str(exc)[:300]}"}))
                    close_old_connections()
                else:
                    if any(report.values()):
                        self.stdout.write(json.dumps(report))
                        self.stdout.flush()
                time.sleep(interval)
        except KeyboardInterrupt:
            return
