"""Reads for secrets: metadata only; values come from ``services.secret_resolve``."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from secrets_vault.models import Secret
from secrets_vault.services import NAME_RE
from zyra.errors import NotFound

METADATA_FIELDS = ("id", "owner_id", "name", "description", "key_id", "fingerprint", "created_at", "updated_at", "last_used_at")


def secret_list(*, owner: Any) -> QuerySet[Secret]:
    # defer(): list views never load the encrypted blobs.
    return Secret.objects.filter(owner_id=owner.pk).defer("ciphertext", "nonce", "wrapped_key").order_by("name")


def secret_get(*, owner: Any, ref: str) -> Secret:
    """By name or by numeric id; another owner's secret is simply not found."""
    qs = Secret.objects.filter(owner_id=owner.pk)
    secret = None
    if isinstance(ref, str) and ref.isdigit() and len(ref) < 19:
        secret = qs.filter(pk=int(ref)).first()
    elif isinstance(ref, str) and NAME_RE.match(ref):
        # Only well-formed names reach the database (a NUL byte would be a 500).
        secret = qs.filter(name=ref).first()
    if secret is None:
        raise NotFound("Secret not found.")
    return secret


def secret_names_for_owner(owner_id: int) -> set[str]:
    """Names of the owner's secrets (the validator's `unknown_secret` check)."""
    return set(Secret.objects.filter(owner_id=owner_id).values_list("name", flat=True))
