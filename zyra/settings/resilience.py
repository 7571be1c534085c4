"""Defaults for outbound calls: safe HTTP, circuit breakers, rate limits (DESIGN §5).

Per-service overrides of the breaker and limiter numbers live in the
``ServicePolicy`` table (admin); these are the fallbacks.
"""

from __future__ import annotations

from zyra.env import env_bool, env_float, env_int, env_str

# --- safe HTTP ---------------------------------------------------------------
ZYRA_HTTP_MAX_RESPONSE_BYTES = env_int("ZYRA_HTTP_MAX_RESPONSE_BYTES", 10 * 1024 * 1024)
ZYRA_HTTP_MAX_REDIRECTS = env_int("ZYRA_HTTP_MAX_REDIRECTS", 5)
ZYRA_HTTP_CONNECT_TIMEOUT_S = env_float("ZYRA_HTTP_CONNECT_TIMEOUT_S", 5.0)
# Optional PEM file of extra CA certificates trusted for outbound HTTPS (an internal CA).
ZYRA_HTTP_CA_BUNDLE = env_str("ZYRA_HTTP_CA_BUNDLE", "")
# Default total timeout of one call when neither the node nor the caller gives one.
ZYRA_HTTP_TIMEOUT_S = env_float("ZYRA_HTTP_TIMEOUT_S", 30.0)

# --- circuit breaker ---------------------------------------------------------
# Open when failures / calls >= this over the rolling window...
ZYRA_BREAKER_FAILURE_RATE = env_float("ZYRA_BREAKER_FAILURE_RATE", 0.5)
# ...once at least this many calls were seen in it.
ZYRA_BREAKER_MIN_CALLS = env_int("ZYRA_BREAKER_MIN_CALLS", 5)
# Length of the rolling window and the width of one bucket in it.
ZYRA_BREAKER_WINDOW_S = env_int("ZYRA_BREAKER_WINDOW_S", 60)
ZYRA_BREAKER_BUCKET_S = env_int("ZYRA_BREAKER_BUCKET_S", 1)
# How long an opened breaker rejects calls before one probe is let through;
# each consecutive re-open multiplies it (1.0 = constant), capped.
ZYRA_BREAKER_OPEN_WAIT_S = env_float("ZYRA_BREAKER_OPEN_WAIT_S", 30.0)
ZYRA_BREAKER_WAIT_MULTIPLIER = env_float("ZYRA_BREAKER_WAIT_MULTIPLIER", 1.0)
ZYRA_BREAKER_MAX_OPEN_WAIT_S = env_float("ZYRA_BREAKER_MAX_OPEN_WAIT_S", 600.0)
# The half-open probe's lease: its call timeout plus this grace, so a probe
# whose worker died (or hangs past its timeout) frees the slot for another.
ZYRA_BREAKER_PROBE_GRACE_S = env_float("ZYRA_BREAKER_PROBE_GRACE_S", 5.0)
# While a probe is in flight, other callers are deferred by at most this long
# (they come back soon after the probe closes the breaker).
ZYRA_BREAKER_HALF_OPEN_RECHECK_S = env_float("ZYRA_BREAKER_HALF_OPEN_RECHECK_S", 1.0)
# Slow calls (0 = off): a call slower than SLOW_CALL_S counts as slow, and the
# breaker also opens when slow / calls >= SLOW_CALL_RATE.
ZYRA_BREAKER_SLOW_CALL_S = env_float("ZYRA_BREAKER_SLOW_CALL_S", 0.0)
ZYRA_BREAKER_SLOW_CALL_RATE = env_float("ZYRA_BREAKER_SLOW_CALL_RATE", 1.0)
# Store the outcomes of calls made while CLOSED from a per-process writer thread,
# batched, off the call's critical path (see executions.resilience.breaker._WriteBehind).
ZYRA_BREAKER_WRITE_BEHIND = env_bool("ZYRA_BREAKER_WRITE_BEHIND", True)
# How long (ms) the writer lets successes queue up to fold them into one write; a failure, a slow
# call or a flush writes at once. 0: write whatever has queued as soon as the writer wakes.
ZYRA_BREAKER_WRITE_WINDOW_MS = env_int("ZYRA_BREAKER_WRITE_WINDOW_MS", 200)
# Breaker storage statements give up after this (ms) instead of hanging a worker.
ZYRA_BREAKER_DB_TIMEOUT_MS = env_int("ZYRA_BREAKER_DB_TIMEOUT_MS", 2000)

# --- rate limit (GCRA in Redis, per service key) ------------------------------
# Requests per second and burst per service (0 = unlimited).
ZYRA_RATE_LIMIT_PER_S = env_float("ZYRA_RATE_LIMIT_PER_S", 100.0)
ZYRA_RATE_LIMIT_BURST = env_int("ZYRA_RATE_LIMIT_BURST", 100)
# Grants are spaced this fraction wider than 1/rate, so delivery jitter between the
# limiter and the service cannot push the service over its limit in any second.
ZYRA_RATE_LIMIT_HEADROOM = env_float("ZYRA_RATE_LIMIT_HEADROOM", 0.15)
# Upper bound on an upstream Retry-After we honour (a hostile server cannot park us for days).
ZYRA_RETRY_AFTER_MAX_S = env_float("ZYRA_RETRY_AFTER_MAX_S", 3600.0)

# --- email (EMAIL node) --------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "zyra@localhost")
