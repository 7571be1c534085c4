"""A second PostgreSQL connection to the test database, beside Django's (to hold locks, kill backends)."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connection


def second_connection(**options: Any) -> psycopg.Connection[Any]:
    """A plain psycopg connection with Django's own connection parameters (``options`` override them)."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**{**params, **options})
