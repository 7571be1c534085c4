"""Writes for secrets. Values enter here and leave only through ``secret_resolve``."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from secrets_vault import crypto
from secrets_vault.keyring import get_keyring
from secrets_vault.models import Secret
from zyra.errors import Conflict, ErrorDetail, ZyraError
from zyra.redaction import MIN_SECRET_LEN

log = logging.getLogger("secrets_vault.services")

# Identifiers only, so `{{ secrets.NAME }}` works and a name can never be read as an id.
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MAX_DESCRIPTION = 1000
LAST_USED_RESOLUTION_S = 60


def _invalid(path: str, code: str, message: str) -> ZyraError:
    return ZyraError("validation_error", "The request is invalid.", [ErrorDetail(path, code, message)], 400)


def validate_name(name: Any) -> str:
    if not isinstance(name, str):
        raise _invalid("/name", "invalid_type", "name must be a string")
    if not NAME_RE.match(name):
        raise _invalid(
            "/name", "invalid_name", "name must start with a letter or '_' and contain only letters, digits and '_' (at most 100)"
        )
    return name


def validate_value(value: Any) -> str:
    # Messages never include the value itself.
    if not isinstance(value, str):
        raise _invalid("/value", "invalid_type", "value must be a string")
    if len(value) < MIN_SECRET_LEN:
        raise _invalid(
            "/value", "too_short", f"value must be at least {MIN_SECRET_LEN} characters (shorter values cannot be redacted reliably)"
        )
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > settings.ZYRA_SECRET_MAX_BYTES:
        raise _invalid("/value", "too_long", f"value must be at most {settings.ZYRA_SECRET_MAX_BYTES} bytes")
    if "\x00" in value:
        raise _invalid("/value", "invalid_value", "value must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid("/value", "invalid_value", "value must be valid Unicode text") from None
    return value


def validate_description(description: Any) -> str:
    if not isinstance(description, str):
        raise _invalid("/description", "invalid_type", "description must be a string")
    if len(description) > MAX_DESCRIPTION or "\x00" in description:
        raise _invalid("/description", "too_long", f"description must be at most {MAX_DESCRIPTION} characters, without NUL")
    return description


def _seal(secret: Secret, value: str) -> None:
    ring = get_keyring()
    env = crypto.encrypt(value, ring=ring, aad=crypto.secret_aad(secret.owner_id, secret.name))
    secret.ciphertext = env.ciphertext
    secret.nonce = env.nonce
    secret.wrapped_key = env.wrapped_key
    secret.key_id = env.key_id
    secret.fingerprint = crypto.fingerprint(value, secret_key=settings.SECRET_KEY, owner_id=secret.owner_id)


def _open(secret: Secret) -> str:
    return crypto.decrypt(secret.envelope(), ring=get_keyring(), aad=crypto.secret_aad(secret.owner_id, secret.name))


def _duplicate(name: str) -> Conflict:
    err = Conflict("duplicate_name", f"a secret named {name!r} already exists")
    err.details.append(ErrorDetail("/name", "duplicate_name", "names are unique per owner"))
    return err


@transaction.atomic
def secret_create(*, owner: Any, name: str, value: str, description: str = "") -> Secret:
    name = validate_name(name)
    value = validate_value(value)
    description = validate_description(description)
    secret = Secret(owner_id=owner.pk, name=name, description=description)
    _seal(secret, value)
    try:
        with transaction.atomic():
            secret.save()
    except IntegrityError:
        raise _duplicate(name) from None
    log.info("secrets_vault.secret_created secret_id=%s owner_id=%s name=%s", secret.pk, owner.pk, name)
    return secret


@transaction.atomic
def secret_update(*, secret: Secret, name: str | None = None, value: str | None = None, description: str | None = None) -> Secret:
    """Change any of name, value, description. A rename re-encrypts: the name is in the AAD."""
    locked = Secret.objects.select_for_update().get(pk=secret.pk)
    fields = ["updated_at"]
    if description is not None:
        locked.description = validate_description(description)
        fields.append("description")
    new_name = validate_name(name) if name is not None else locked.name
    if value is not None:
        value = validate_value(value)
    if new_name != locked.name or value is not None:
        plain = value if value is not None else _open(locked)
        locked.name = new_name
        _seal(locked, plain)
        fields += ["name", "ciphertext", "nonce", "wrapped_key", "key_id", "fingerprint"]
    try:
        with transaction.atomic():
            locked.save(update_fields=fields)
    except IntegrityError:
        raise _duplicate(new_name) from None
    log.info("secrets_vault.secret_updated secret_id=%s fields=%s", locked.pk, ",".join(sorted(set(fields))))
    return locked


@transaction.atomic
def secret_delete(*, secret: Secret) -> None:
    log.info("secrets_vault.secret_deleted secret_id=%s owner_id=%s", secret.pk, secret.owner_id)
    secret.delete()


def secret_resolve(*, owner_id: int, name: str, touch: bool = True) -> str:
    """Decrypt the owner's secret ``name``; KeyError when it does not exist.

    Only code that needs the value (the worker rendering a template, webhook
    signature checks) calls this. The caller registers the value for redaction.
    """
    secret = Secret.objects.filter(owner_id=owner_id, name=name).first()
    if secret is None:
        raise KeyError(name)
    value = _open(secret)
    if touch:
        # At most one write a minute per secret: parallel nodes resolving the same
        # secret would otherwise queue on its row lock.
        now = timezone.now()
        Secret.objects.filter(pk=secret.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - timedelta(seconds=LAST_USED_RESOLUTION_S))
        ).update(last_used_at=now)
    return value


def secret_value_for(*, secret: Secret) -> str:
    """Decrypt a row already loaded (no last_used_at bump)."""
    return _open(secret)


@dataclass
class RotationResult:
    rewrapped: int
    skipped: int  # rows already under the newest key at the start
    primary_id: str
    remaining: int  # rows still under another key (0 when complete)


def secrets_rotate_master_key(*, batch_size: int | None = None, max_rows: int | None = None) -> RotationResult:
    """Re-wrap every data key not under the newest master key, one batch per transaction.

    Idempotent and resumable: each batch commits on its own and the next query
    only selects rows still under an old key, so an interrupted rotation picks
    up where it stopped. ``max_rows`` bounds one call (tests use it to interrupt).
    """
    ring = get_keyring()
    batch = batch_size or settings.ZYRA_ROTATION_BATCH
    rewrapped = 0
    skipped = Secret.objects.filter(key_id=ring.primary_id).count()
    last_pk = 0
    while max_rows is None or rewrapped < max_rows:
        limit = batch if max_rows is None else min(batch, max_rows - rewrapped)
        with transaction.atomic():
            rows = list(
                Secret.objects.select_for_update(skip_locked=True)
                .filter(pk__gt=last_pk)
                .exclude(key_id=ring.primary_id)
                .order_by("pk")[:limit]
            )
            if not rows:
                break
            for row in rows:
                env = crypto.rewrap(row.envelope(), ring=ring, aad=crypto.secret_aad(row.owner_id, row.name))
                Secret.objects.filter(pk=row.pk, key_id=row.key_id).update(wrapped_key=env.wrapped_key, key_id=env.key_id)
                rewrapped += 1
                last_pk = row.pk
        log.info("secrets_vault.rotation_batch rewrapped=%s primary=%s", rewrapped, ring.primary_id)
    remaining = Secret.objects.exclude(key_id=ring.primary_id).count()
    return RotationResult(rewrapped=rewrapped, skipped=skipped, primary_id=ring.primary_id, remaining=remaining)
