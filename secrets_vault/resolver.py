"""The worker's entry point for ``{{ secrets.NAME }}``."""

from __future__ import annotations

from secrets_vault.services import secret_resolve
from zyra.redaction import Redactor, global_redactor


def resolve_secret(*, owner_id: int, name: str, redactor: Redactor) -> str:
    """Decrypt the owner's secret and register it for redaction before returning it.

    Registered with the run's ``redactor`` (stored/sent data) and the process-wide
    one (log lines). Raises KeyError when the owner has no such secret.
    """
    value = secret_resolve(owner_id=owner_id, name=name)
    redactor.register(name, value)
    global_redactor().register(name, value)
    return value
