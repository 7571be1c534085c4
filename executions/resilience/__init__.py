"""Resilience for outbound calls (DESIGN §5): safe HTTP, circuit breakers, rate limits.

Entry point for node handlers: ``executions.resilience.outbound.request`` (HTTP)
or ``outbound.admit`` + ``Admission.settle`` (other I/O, e.g. SMTP).

- ``safe_http``: SSRF guard at connect time (resolve once, check every
  address, connect to the checked one; TLS SNI and Host of the name),
  redirects followed and re-checked hop by hop, size cap, timeouts.
- ``breaker``: per-service circuit breaker in PostgreSQL; one half-open probe
  across all workers via a conditional UPDATE lease that expires; outcomes of
  closed-state calls written behind the call by a per-process thread.
- ``ratelimit``: GCRA per service in Redis (one Lua script), upstream
  ``Retry-After`` blocks; in-process fallback when embedded.

Failure policy of the guards' own storage: fail open, log at ERROR
(``executions.breaker_storage_failed`` / ``executions.ratelimit_storage_failed``).
"""
