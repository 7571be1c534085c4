from __future__ import annotations

from django.apps import AppConfig


class TriggersConfig(AppConfig):
    name = "triggers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the beat task with the Celery app without editing zyra/celery.py's
        # autodiscover list.
        from triggers import tasks  # noqa: F401
