from django.apps import AppConfig


class SecretsVaultConfig(AppConfig):
    name = "secrets_vault"
    default_auto_field = "django.db.models.BigAutoField"
