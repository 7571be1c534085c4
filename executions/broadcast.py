"""Broadcast of committed events to Channels groups (run and workflow).

Called by ``executions.events`` after the transaction that wrote the events
commits. The monitoring work owns this module's implementation.
"""

from __future__ import annotations

from typing import Any


def publish(events: list[dict[str, Any]]) -> None:
    """Send each event payload to its run's and workflow's groups."""
    return None
