"""Environment defaults for the test suite: PostgreSQL and Redis on loopback."""

from __future__ import annotations

import base64
import os
import secrets

_redis_db = os.environ.get("ZYRA_TEST_REDIS_DB", "5")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("CELERY_BROKER_URL", f"redis://127.0.0.1:6379/{_redis_db}")
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{_redis_db}")
os.environ.setdefault("ZYRA_HTTP_ALLOWLIST", "127.0.0.1,::1,localhost")
# Random keys for this test session; worker, server and beat processes inherit them.
os.environ.setdefault("ZYRA_MASTER_KEYS", "test1:" + base64.b64encode(os.urandom(32)).decode())
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("ZYRA_REQUEUE_AFTER_S", "5")
