"""Secrets vault and trigger knobs.

Master keys come ONLY from the environment (``ZYRA_MASTER_KEYS``). The value is
parsed and checked when the ``secrets_vault`` app starts (a missing or
malformed key ring stops the process there, loudly).

Embedded mode (no ``DATABASE_URL``) with no ``ZYRA_MASTER_KEYS``: a development
key ring is generated once into ``var/dev-master-keys`` (mode 0600) and used
with a loud warning, so a first run needs no configuration. Any deployment with
``DATABASE_URL`` must set ``ZYRA_MASTER_KEYS``.
"""

from __future__ import annotations

from zyra.env import env_bool, env_int, env_str
from zyra.settings.base import VAR_DIR

ZYRA_MASTER_KEYS = env_str("ZYRA_MASTER_KEYS", "")
# Only used when ZYRA_MASTER_KEYS is empty and there is no DATABASE_URL.
ZYRA_VAULT_DEV_KEY_FILE = "" if env_str("DATABASE_URL", "") else str(VAR_DIR / "dev-master-keys")
# Largest secret value accepted (UTF-8 bytes).
ZYRA_SECRET_MAX_BYTES = env_int("ZYRA_SECRET_MAX_BYTES", 64 * 1024)
# Rows re-wrapped per transaction by `manage.py rotate_master_key`.
ZYRA_ROTATION_BATCH = env_int("ZYRA_ROTATION_BATCH", 200)

# Webhooks: timestamp tolerance (both directions) and how long delivery ids are
# remembered for replay rejection (never shorter than the tolerance).
ZYRA_WEBHOOK_TOLERANCE_S = env_int("ZYRA_WEBHOOK_TOLERANCE_S", 300)
ZYRA_WEBHOOK_REPLAY_RETENTION_S = max(env_int("ZYRA_WEBHOOK_REPLAY_RETENTION_S", 24 * 3600), ZYRA_WEBHOOK_TOLERANCE_S * 2)
ZYRA_WEBHOOK_DEFAULT_MAX_BODY = env_int("ZYRA_WEBHOOK_DEFAULT_MAX_BODY", 256 * 1024)
ZYRA_WEBHOOK_DEFAULT_RATE_PER_S = env_int("ZYRA_WEBHOOK_DEFAULT_RATE_PER_S", 50)
# Deliveries processed at once per web process (each holds a DB connection);
# the rest wait up to ZYRA_WEBHOOK_QUEUE_TIMEOUT_S, then get 503 + Retry-After.
ZYRA_WEBHOOK_CONCURRENCY = env_int("ZYRA_WEBHOOK_CONCURRENCY", 8)
ZYRA_WEBHOOK_QUEUE_TIMEOUT_S = env_int("ZYRA_WEBHOOK_QUEUE_TIMEOUT_S", 30)
# Under ASGI, answer POST /hooks/{token}/ before Django's request cycle
# (triggers/asgi.py): same checks and answers, a fraction of the CPU.
ZYRA_WEBHOOK_FAST_PATH = env_bool("ZYRA_WEBHOOK_FAST_PATH", True)
# Schedules: the most missed ticks one schedule with catch_up=true replays.
ZYRA_SCHEDULE_MAX_CATCH_UP = env_int("ZYRA_SCHEDULE_MAX_CATCH_UP", 100)
