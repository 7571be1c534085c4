"""Test settings: PostgreSQL and Redis on loopback unless the environment says otherwise.

The environment defaults live in ``_testenv`` (imported by the package before
any settings module reads the environment).
"""

from __future__ import annotations

from zyra.settings import *  # noqa: F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
