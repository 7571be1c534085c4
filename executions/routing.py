"""WebSocket routes (included by ``zyra.routing``).

Each route carries its own authentication stack (session cookie; the
consumers read DRF tokens from the query string or subprotocol), so the
project's ASGI entry point needs no change.
"""

from __future__ import annotations

from typing import Any

from django.urls import path

from executions.consumers import RunEventsConsumer, SessionUserMiddleware, WorkflowEventsConsumer

websocket_urlpatterns: list[Any] = [
    path("ws/runs/<uuid:run_id>/", SessionUserMiddleware(RunEventsConsumer.as_asgi())),
    path("ws/workflows/<uuid:workflow_id>/", SessionUserMiddleware(WorkflowEventsConsumer.as_asgi())),
]
