"""``manage.py prune_runs --older-than-days N``: retention by hand (the beat task runs the same code)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions.retention import runs_prune


class Command(BaseCommand):
    help = "Delete finished runs created before midnight UTC N days ago, in small batches, keeping daily aggregates."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than-days", type=int, default=None, help="age in days (default: ZYRA_RETENTION_DAYS; 0 there keeps everything)"
        )
        parser.add_argument("--batch-size", type=int, default=None, help="runs per transaction (default ZYRA_RETENTION_BATCH)")
        parser.add_argument("--max-batches", type=int, default=None, help="stop after this many batches (default: until done)")
        parser.add_argument("--pause", type=float, default=None, help="seconds between batches (default ZYRA_RETENTION_PAUSE_S)")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than_days"]
        if days is None:
            days = settings.ZYRA_RETENTION_DAYS
            if days <= 0:
                self.stdout.write("retention is off (ZYRA_RETENTION_DAYS=0): nothing pruned")
                return
        if days < 1:
            raise CommandError("--older-than-days must be at least 1")
        size = options["batch_size"]
        if size is not None and not 1 <= size <= 10_000:
            raise CommandError("--batch-size must be between 1 and 10000")
        result = runs_prune(older_than_days=days, batch_size=size, max_batches=options["max_batches"], pause_s=options["pause"])
        self.stdout.write(json.dumps(result.as_dict()))
