"""Embedded mode in one process: daphne + the in-process Celery worker, in-memory channel layer.

    python embedded_server.py -b 127.0.0.1 -p <port> zyra.asgi:application

Started with REDIS_URL and CELERY_BROKER_URL empty, so nothing goes through Redis.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zyra.settings.test")
sys.path.insert(0, os.getcwd())

import django  # noqa: E402

django.setup()

from daphne.cli import CommandLineInterface  # noqa: E402
from django.conf import settings  # noqa: E402

from executions import embedded  # noqa: E402

assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer", settings.CHANNEL_LAYERS
assert embedded.is_embedded(), settings.CELERY_BROKER_URL
embedded.start()
CommandLineInterface().run(sys.argv[1:])
