from __future__ import annotations

from django.apps import AppConfig


class SecretsVaultConfig(AppConfig):
    name = "secrets_vault"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from secrets_vault import checks  # noqa: F401 - registers the system checks
        from secrets_vault.keyring import get_keyring

        # Fail at start, loudly, on a missing or malformed ZYRA_MASTER_KEYS: a web
        # or worker process that cannot decrypt must not come up half-working.
        get_keyring()
