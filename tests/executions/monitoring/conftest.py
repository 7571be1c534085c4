"""Fixtures of the live-monitoring tests: a real daphne server on the test database and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from tests.executions.monitoring.support import AsgiServer, start_server


@pytest.fixture(scope="session")
def asgi_server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[AsgiServer]:
    """daphne serving zyra.asgi on a free loopback port; channel layer = Redis pub/sub.

    A small replay page makes replays slow enough to overlap with commits; the
    long heartbeat keeps the periodic resync (a DB read) out of the way, so a
    live event can only have arrived through Redis.
    """
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    server = start_server(db_name, "daphne-monitoring", {"ZYRA_WS_REPLAY_PAGE": "5", "ZYRA_WS_HEARTBEAT_S": "30"})
    yield server
    server.stop()


def token_for(user: Any) -> str:
    token, _ = Token.objects.get_or_create(user=user)
    return str(token.key)
