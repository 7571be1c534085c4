"""The Celery app. Transport only: PostgreSQL holds the truth of every run."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zyra.settings")

app = Celery("zyra")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["executions", "workflows", "secrets_vault"])
