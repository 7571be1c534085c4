"""ASGI entry point: HTTP (Django) and WebSockets (Channels)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zyra.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

# Load the URLconf (and with it every view, serializer and the admin) now, not in each server
# process's first request: under a burst, those imports (~0.1 s of CPU per process) landed on the
# requests that arrived first.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018 - the attribute loads the module

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from triggers.asgi import WebhookIntake  # noqa: E402
from zyra.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # POST /hooks/{token}/ is answered before Django's request cycle (triggers/asgi.py).
        "http": WebhookIntake(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)

# Embedded mode (no broker configured): the server runs the worker and sweeper in-process,
# so a single `daphne zyra.asgi:application` executes runs and streams their events.
from executions.embedded import ensure_started  # noqa: E402

ensure_started()
