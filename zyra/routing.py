from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []

try:
    from executions.routing import websocket_urlpatterns as _exec_ws

    websocket_urlpatterns += _exec_ws
except ImportError:  # the monitoring module may not be installed yet
    pass
