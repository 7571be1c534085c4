"""System checks: the key ring decrypts what is stored (`manage.py check --database default`)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register
from django.db import DatabaseError

from secrets_vault import crypto
from secrets_vault.keyring import KeyRingError, get_keyring


@register(Tags.database)
def keyring_matches_stored_secrets(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from secrets_vault.models import Secret

    try:
        ring = get_keyring()
    except KeyRingError as exc:
        return [Error(str(exc), id="secrets_vault.E001")]
    errors: list[CheckMessage] = []
    try:
        key_ids = sorted(set(Secret.objects.values_list("key_id", flat=True).distinct()))
        for key_id in key_ids:
            if key_id not in ring.keys:
                count = Secret.objects.filter(key_id=key_id).count()
                errors.append(
                    Error(
                        f"{count} secret(s) are wrapped under master key {key_id!r}, which is not in ZYRA_MASTER_KEYS",
                        hint="Add the key back, or restore it and run `manage.py rotate_master_key` before removing it.",
                        id="secrets_vault.E002",
                    )
                )
                continue
            sample = Secret.objects.filter(key_id=key_id).order_by("pk").first()
            if sample is None:
                continue
            try:
                crypto.unwrap_data_key(
                    bytes(sample.wrapped_key), key_id=key_id, ring=ring, aad=crypto.secret_aad(sample.owner_id, sample.name)
                )
            except crypto.DecryptionError:
                errors.append(
                    Error(
                        f"master key {key_id!r} in ZYRA_MASTER_KEYS does not decrypt the secrets wrapped under that id (wrong key value)",
                        id="secrets_vault.E003",
                    )
                )
    except DatabaseError:
        # Tables not migrated yet: nothing stored to check.
        return errors
    return errors
