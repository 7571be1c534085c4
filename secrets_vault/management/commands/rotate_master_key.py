"""Re-wrap every secret's data key under the newest master key (the first in ZYRA_MASTER_KEYS).

Procedure: put the new key first (``ZYRA_MASTER_KEYS="k2:...,k1:..."``), deploy,
run this command until it reports 0 remaining, then remove ``k1``. Ciphertexts
are not touched. Safe to interrupt and re-run: rows already under the newest
key are skipped.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from secrets_vault.crypto import DecryptionError
from secrets_vault.keyring import KeyRingError
from secrets_vault.services import secrets_rotate_master_key


class Command(BaseCommand):
    help = "Re-wrap all secret data keys under the newest master key, in batches (resumable)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=None, help="rows per transaction (default ZYRA_ROTATION_BATCH)")
        parser.add_argument("--max-rows", type=int, default=None, help="stop after this many rows (resume later)")

    def handle(self, *args: Any, **options: Any) -> None:
        batch = options.get("batch_size")
        if batch is not None and batch < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            result = secrets_rotate_master_key(batch_size=batch, max_rows=options.get("max_rows"))
        except (KeyRingError, DecryptionError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"rewrapped={result.rewrapped} already_current={result.skipped} remaining={result.remaining} primary={result.primary_id}"
        )
        if result.remaining:
            self.stdout.write(self.style.WARNING("rotation incomplete: run the command again before removing old keys"))
        else:
            self.stdout.write(self.style.SUCCESS("every secret is wrapped under the newest key; old keys may be removed"))
