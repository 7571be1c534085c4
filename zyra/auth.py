"""API token authentication: DRF's TokenAuthentication with its lookup in one precompiled statement.

DRF looks a token up with ``Token.objects.select_related("user").get(key=...)``:
the ORM builds and compiles that query on every request, which was a seventh
of the API's CPU per run start (py-spy, bench_load's submission). The same
row is read here with one fixed SQL statement and built with ``from_db``;
the answers (the user and the token, "Invalid token.", "User inactive or
deleted.") are DRF's own.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

_SQL: tuple[str, list[str], list[str]] | None = None


def _statement() -> tuple[str, list[str], list[str]]:
    global _SQL
    if _SQL is None:
        user_model = get_user_model()
        user_cols = list(user_model._meta.concrete_fields)
        token_cols = list(Token._meta.concrete_fields)

        def qn(name: str | None) -> str:
            return connection.ops.quote_name(str(name))

        by_name = {f.name: f for f in token_cols}
        cols = [f"u.{qn(f.column)}" for f in user_cols] + [f"t.{qn(f.column)}" for f in token_cols]
        sql = (
            f"SELECT {', '.join(cols)} FROM {qn(Token._meta.db_table)} t "
            f"JOIN {qn(user_model._meta.db_table)} u ON u.{qn(user_model._meta.pk.column)} = t.{qn(by_name['user'].column)} "
            f"WHERE t.{qn(by_name['key'].column)} = %s"
        )
        user_fields = [f.attname for f in user_cols]
        token_fields = [f.attname for f in token_cols]
        _SQL = (sql, user_fields, token_fields)
    return _SQL


@functools.cache
def _key_max() -> int:
    return int(Token._meta.get_field("key").max_length or 0) or 2**31


def token_user(key: str) -> tuple[Any, Token] | None:
    """The user and token of ``key`` (None: no such token), read in one statement."""
    sql, user_fields, token_fields = _statement()
    with connection.cursor() as cur:
        cur.execute(sql, [key])
        row = cur.fetchone()
    if row is None:
        return None
    n = len(user_fields)
    user = get_user_model().from_db(connection.alias, user_fields, row[:n])
    token = Token.from_db(connection.alias, token_fields, row[n:])
    token.user = user  # the relation, already loaded
    return user, token


class FastTokenAuthentication(TokenAuthentication):
    def authenticate(self, request: Any) -> tuple[Any, Token] | None:
        try:
            return super().authenticate(request)
        except UnicodeEncodeError:  # a str header beyond latin-1 (Django's test client): DRF's own 500
            raise exceptions.AuthenticationFailed(_("Invalid token header. Token string should not contain invalid characters.")) from None

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        # A key no token can have is not looked up: PostgreSQL refuses a NUL in a text parameter (a 500
        # from DRF's own lookup), and an overlong one cannot match the column.
        if "\x00" in key or len(key) > _key_max():
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        found = token_user(key)
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user, token = found
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, token
