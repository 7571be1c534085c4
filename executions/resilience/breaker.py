"""Circuit breaker per service key, state in PostgreSQL (DESIGN §5).

Semantics after Resilience4j:

- CLOSED: every call is let through; outcomes go into a rolling time window
  of buckets (``CircuitBreaker.window``: ``[bucket_start_epoch, calls,
  failures, slow]``). Once at least ``minimum_calls`` were seen in the window
  and ``failures / calls >= failure_rate_threshold`` (or, if slow-call
  detection is on, ``slow / calls >= slow_call_rate_threshold``) it OPENS.
- OPEN: calls are refused until ``open_until``; the caller defers its node to
  that instant (no retry attempt spent).
- HALF_OPEN: exactly one caller across all workers wins the probe lease with
  one conditional ``UPDATE ... RETURNING`` (the row is the arbiter, not any
  process' memory). The lease expires (call timeout + grace) so a probe whose
  worker died or hung cannot wedge the breaker: the next caller after expiry
  takes a new lease. A probe success CLOSES the breaker, a failure re-OPENS it
  (the wait grows by ``wait_multiplier`` per consecutive open, capped).
- Only ``timeout``, ``connection`` and 5xx outcomes are failures; 4xx/429
  are answers of a healthy service and count as successes; a call refused by
  the SSRF guard never reached the service and is not counted at all.

Storage failure policy (the breaker's DB is unreachable, or a statement runs
past ``ZYRA_BREAKER_DB_TIMEOUT_MS``: ``OperationalError`` / ``InterfaceError``;
programming errors are not masked): FAIL OPEN. The call proceeds as if the
breaker were closed and the error is logged at ERROR
(``executions.breaker_storage_failed``). Reason: the breaker exists to
protect the engine and the remote service from a failing dependency; a
breaker that blocks every call when its own bookkeeping fails reproduces the
"global breaker stuck open" outage this design replaces. A failed outcome
record is likewise logged and dropped, never turned into a node failure.

The ``Breaker`` object holds configuration only (STYLE: stateless resilience
objects); every state change is one atomic statement or one short
transaction with a row lock and a lock timeout.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from executions.models import CircuitBreaker, CircuitState, ServicePolicy

log = logging.getLogger("executions.resilience")

Outcome = Literal["success", "failure", "ignored"]
_W = '"window"'  # a reserved word in PostgreSQL: the column name must be quoted


@dataclass(frozen=True)
class BreakerConfig:
    failure_rate_threshold: float  # open when failures / calls >= this (fraction 0..1)
    minimum_calls: int  # ...but only once the window holds at least this many calls
    window_s: int  # length of the rolling window
    bucket_s: int  # width of one bucket of the window
    open_wait_s: float  # open -> half-open after this long
    wait_multiplier: float  # each consecutive re-open multiplies the wait (1 = constant)
    max_open_wait_s: float  # cap on the grown wait
    probe_grace_s: float  # probe lease = call timeout + this
    half_open_recheck_s: float  # others wait at most this long while a probe is in flight
    slow_call_s: float  # a call slower than this is "slow" (0 = off)
    slow_call_rate_threshold: float  # open when slow / calls >= this (fraction)

    @classmethod
    def from_settings(cls, policy: ServicePolicySnapshot | None = None) -> BreakerConfig:
        s = settings
        threshold = float(s.ZYRA_BREAKER_FAILURE_RATE)
        minimum = int(s.ZYRA_BREAKER_MIN_CALLS)
        window = int(s.ZYRA_BREAKER_WINDOW_S)
        wait = float(s.ZYRA_BREAKER_OPEN_WAIT_S)
        if policy is not None:
            if policy.failure_rate_threshold is not None:
                threshold = float(policy.failure_rate_threshold)
            if policy.minimum_calls is not None:
                minimum = int(policy.minimum_calls)
            if policy.window_s is not None:
                window = int(policy.window_s)
            if policy.open_wait_s is not None:
                wait = float(policy.open_wait_s)
        if threshold > 1.0:
            threshold = threshold / 100.0  # tolerate Resilience4j-style percentages (50 = 50 %)
        return cls(
            failure_rate_threshold=min(1.0, max(0.0, threshold)),
            minimum_calls=max(1, minimum),
            window_s=max(1, window),
            bucket_s=max(1, int(s.ZYRA_BREAKER_BUCKET_S)),
            open_wait_s=max(0.0, wait),
            wait_multiplier=max(1.0, float(s.ZYRA_BREAKER_WAIT_MULTIPLIER)),
            max_open_wait_s=max(wait, float(s.ZYRA_BREAKER_MAX_OPEN_WAIT_S)),
            probe_grace_s=max(0.0, float(s.ZYRA_BREAKER_PROBE_GRACE_S)),
            half_open_recheck_s=max(0.05, float(s.ZYRA_BREAKER_HALF_OPEN_RECHECK_S)),
            slow_call_s=max(0.0, float(s.ZYRA_BREAKER_SLOW_CALL_S)),
            slow_call_rate_threshold=min(1.0, max(0.0, float(s.ZYRA_BREAKER_SLOW_CALL_RATE))),
        )


@dataclass(frozen=True)
class ServicePolicySnapshot:
    """The ServicePolicy overrides of one key (None = use the setting)."""

    rate_per_s: float | None = None
    burst: int | None = None
    failure_rate_threshold: float | None = None
    minimum_calls: int | None = None
    window_s: int | None = None
    open_wait_s: float | None = None


@dataclass(frozen=True)
class BreakerSnapshot:
    state: str
    open_until: datetime | None
    probe_lease_until: datetime | None


@dataclass(frozen=True)
class ServiceState:
    """What one read tells about a service key: its overrides and its breaker."""

    key: str
    policy: ServicePolicySnapshot | None
    breaker: BreakerSnapshot | None  # None: no row yet (never recorded = closed)


def service_state_load(*, key: str) -> ServiceState:
    """One round trip: the key's ServicePolicy overrides and breaker state.

    Raises OperationalError when storage is unavailable (the caller fails open).
    """
    cb, sp = CircuitBreaker._meta.db_table, ServicePolicy._meta.db_table
    sql = (
        f"SELECT b.state, b.open_until, b.probe_lease_until, p.id, p.rate_per_s, p.burst, "
        f"p.failure_rate_threshold, p.minimum_calls, p.window_s, p.open_wait_s "
        f"FROM (SELECT %s::varchar AS k) q "
        f"LEFT JOIN {cb} b ON b.key = q.k LEFT JOIN {sp} p ON p.key = q.k"
    )
    with transaction.atomic(), connection.cursor() as cur:
        _lock_timeout(cur)
        cur.execute(sql, [key])
        row = cur.fetchone()
    assert row is not None
    state, open_until, lease_until, policy_id, *overrides = row
    policy = ServicePolicySnapshot(*overrides) if policy_id is not None else None
    breaker = BreakerSnapshot(state, open_until, lease_until) if state is not None else None
    return ServiceState(key=key, policy=policy, breaker=breaker)


class CircuitOpen(Exception):
    """The breaker refuses the call; ``until`` is when it is worth trying again."""

    def __init__(self, key: str, until: datetime, state: str) -> None:
        super().__init__(f"circuit for {key} is {state} until {until.isoformat()}")
        self.key = key
        self.until = until
        self.state = state


@dataclass(frozen=True)
class Permit:
    key: str
    probe_token: str | None  # set when this call is the half-open probe
    storage_ok: bool = True  # False: admitted by the fail-open policy


def _lock_timeout(cur: Any) -> None:
    # Transaction-local: a stuck row lock or a sick database costs a worker at
    # most this long before the fail-open policy takes over.
    ms = f"{int(settings.ZYRA_BREAKER_DB_TIMEOUT_MS)}ms"
    cur.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)", [ms, ms])


def _storage_failed(op: str, key: str, exc: BaseException) -> None:
    log.error(
        "executions.breaker_storage_failed",
        extra={"op": op, "service": key, "error": f"{type(exc).__name__}: {exc}", "policy": "fail_open"},
    )


def _wait_s(config: BreakerConfig, consecutive_opens: int) -> float:
    wait = config.open_wait_s * (config.wait_multiplier ** max(0, consecutive_opens - 1))
    return min(wait, config.max_open_wait_s)


class Breaker:
    """Configuration only; every method reads or changes the ``CircuitBreaker`` row atomically."""

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config

    # ------------------------------------------------------------------ admission

    def check(self, key: str, snapshot: BreakerSnapshot | None, *, now: datetime | None = None) -> None:
        """Cheap pre-check on an already-read snapshot: raise CircuitOpen while open and waiting."""
        if snapshot is None or snapshot.state == CircuitState.CLOSED:
            return
        now = now or timezone.now()
        if snapshot.state == CircuitState.OPEN and snapshot.open_until and now < snapshot.open_until:
            raise CircuitOpen(key, snapshot.open_until, CircuitState.OPEN)

    def acquire(
        self, key: str, snapshot: BreakerSnapshot | None, *, call_timeout_s: float, now: datetime | None = None,
        run_id: str | None = None, node_id: str = "",
    ) -> Permit:
        """Admit a call or raise CircuitOpen. In half-open, at most one caller gets the probe."""
        if snapshot is None or snapshot.state == CircuitState.CLOSED:
            return Permit(key, None)
        now = now or timezone.now()
        self.check(key, snapshot, now=now)
        token = secrets.token_hex(16)
        lease_until = now + timedelta(seconds=call_timeout_s + self.config.probe_grace_s)
        try:
            with transaction.atomic():
                with connection.cursor() as cur:
                    _lock_timeout(cur)
                    # The whole arbitration: only the caller whose UPDATE matches wins.
                    cur.execute(
                        f"UPDATE {CircuitBreaker._meta.db_table} SET state = %s, probe_token = %s, "
                        f"probe_lease_until = %s, updated_at = %s "
                        f"WHERE key = %s AND ((state = %s AND open_until <= %s) OR "
                        f"(state = %s AND (probe_lease_until IS NULL OR probe_lease_until <= %s))) "
                        f"RETURNING (SELECT state FROM {CircuitBreaker._meta.db_table} WHERE key = %s)",
                        [CircuitState.HALF_OPEN, token, lease_until, now, key, CircuitState.OPEN, now,
                         CircuitState.HALF_OPEN, now, key],
                    )
                    won = cur.fetchone()
                    if won is None:
                        cur.execute(
                            f"SELECT state, open_until, probe_lease_until FROM {CircuitBreaker._meta.db_table} WHERE key = %s",
                            [key],
                        )
                        current = cur.fetchone()
        except (OperationalError, InterfaceError) as exc:
            _storage_failed("acquire", key, exc)
            return Permit(key, None, storage_ok=False)
        if won is not None:
            if won[0] == CircuitState.OPEN:
                # The breaker moved open -> half-open with this statement.
                _transition(key, "half_opened", run_id=run_id, node_id=node_id, data={"probe_lease_until": lease_until.isoformat()})
            return Permit(key, token)
        if current is None or current[0] == CircuitState.CLOSED:
            return Permit(key, None)  # reset or closed by a probe meanwhile
        state, open_until, probe_lease_until = current
        if state == CircuitState.OPEN and open_until and open_until > now:
            raise CircuitOpen(key, open_until, state)
        # A probe is in flight: come back soon (it usually settles the question quickly).
        recheck = now + timedelta(seconds=self.config.half_open_recheck_s)
        until = min(recheck, probe_lease_until) if probe_lease_until else recheck
        raise CircuitOpen(key, max(until, now + timedelta(milliseconds=50)), CircuitState.HALF_OPEN)

    # ------------------------------------------------------------------ outcomes

    def record(
        self, permit: Permit, outcome: Outcome, *, duration_s: float = 0.0, error: str = "",
        now: datetime | None = None, run_id: str | None = None, node_id: str = "",
    ) -> str | None:
        """Store the call's outcome; returns the transition it caused (opened/closed/reopened) or None."""
        now = now or timezone.now()
        try:
            if permit.probe_token is not None:
                transition = self._record_probe(permit, outcome, error=error, now=now)
            elif outcome == "ignored":
                return None
            else:
                slow = self.config.slow_call_s > 0 and duration_s >= self.config.slow_call_s
                transition = self._record_call(permit.key, outcome == "failure", slow, error=error, now=now)
        except (OperationalError, InterfaceError) as exc:
            _storage_failed("record", permit.key, exc)
            return None
        if transition:
            _transition(permit.key, transition, run_id=run_id, node_id=node_id, data={"error": error[:300]} if error else {})
        return transition

    def _record_probe(self, permit: Permit, outcome: Outcome, *, error: str, now: datetime) -> str | None:
        table = CircuitBreaker._meta.db_table
        with transaction.atomic():
            with connection.cursor() as cur:
                _lock_timeout(cur)
                if outcome == "ignored":
                    # The probe never reached the service: free the slot for another caller.
                    cur.execute(
                        f"UPDATE {table} SET probe_lease_until = %s, probe_token = '', updated_at = %s "
                        f"WHERE key = %s AND state = %s AND probe_token = %s",
                        [now, now, permit.key, CircuitState.HALF_OPEN, permit.probe_token],
                    )
                    return None
                if outcome == "success":
                    cur.execute(
                        f"UPDATE {table} SET state = %s, {_W} = '[]'::jsonb, consecutive_opens = 0, opened_at = NULL, "
                        f"open_until = NULL, probe_lease_until = NULL, probe_token = '', "
                        f"total_calls = total_calls + 1, updated_at = %s "
                        f"WHERE key = %s AND state = %s AND probe_token = %s RETURNING id",
                        [CircuitState.CLOSED, now, permit.key, CircuitState.HALF_OPEN, permit.probe_token],
                    )
                    return "closed" if cur.fetchone() else None
                cur.execute(
                    f"SELECT consecutive_opens FROM {table} WHERE key = %s AND state = %s AND probe_token = %s FOR UPDATE",
                    [permit.key, CircuitState.HALF_OPEN, permit.probe_token],
                )
                row = cur.fetchone()
                if row is None:
                    return None  # our lease lapsed and another probe owns the decision now
                opens = int(row[0]) + 1
                until = now + timedelta(seconds=_wait_s(self.config, opens))
                cur.execute(
                    f"UPDATE {table} SET state = %s, {_W} = '[]'::jsonb, consecutive_opens = %s, opened_at = %s, "
                    f"open_until = %s, probe_lease_until = NULL, probe_token = '', total_calls = total_calls + 1, "
                    f"total_failures = total_failures + 1, last_failure_at = %s, last_failure = %s, updated_at = %s "
                    f"WHERE key = %s",
                    [CircuitState.OPEN, opens, now, until, now, error[:2000], now, permit.key],
                )
                return "reopened"

    def _record_call(self, key: str, failed: bool, slow: bool, *, error: str, now: datetime) -> str | None:
        cfg = self.config
        table = CircuitBreaker._meta.db_table
        epoch = int(now.timestamp())
        bucket = epoch - epoch % cfg.bucket_s
        horizon = epoch - cfg.window_s
        with transaction.atomic():
            with connection.cursor() as cur:
                _lock_timeout(cur)
                cur.execute(f"SELECT state, {_W}, consecutive_opens FROM {table} WHERE key = %s FOR UPDATE", [key])
                row = cur.fetchone()
                if row is None:
                    cur.execute(
                        f"INSERT INTO {table} (key, state, {_W}, total_calls, total_failures, consecutive_opens, "
                        f"probe_token, last_failure, updated_at) VALUES (%s, %s, '[]'::jsonb, 0, 0, 0, '', '', %s) "
                        f"ON CONFLICT (key) DO NOTHING",
                        [key, CircuitState.CLOSED, now],
                    )
                    cur.execute(f"SELECT state, {_W}, consecutive_opens FROM {table} WHERE key = %s FOR UPDATE", [key])
                    row = cur.fetchone()
                    assert row is not None
                state, window, opens = row
                if isinstance(window, str):  # psycopg may hand back text for jsonb on some setups
                    import json

                    window = json.loads(window)
                failure_cols = ", total_failures = total_failures + 1, last_failure_at = %s, last_failure = %s" if failed else ""
                failure_args: list[Any] = [now, error[:2000]] if failed else []
                if state != CircuitState.CLOSED:
                    # Admitted before the breaker opened: count it, decide nothing.
                    cur.execute(
                        f"UPDATE {table} SET total_calls = total_calls + 1{failure_cols}, updated_at = %s WHERE key = %s",
                        [*failure_args, now, key],
                    )
                    return None
                buckets = [b for b in (window or []) if isinstance(b, list) and len(b) == 4 and b[0] > horizon]
                if buckets and buckets[-1][0] == bucket:
                    buckets[-1] = [bucket, buckets[-1][1] + 1, buckets[-1][2] + int(failed), buckets[-1][3] + int(slow)]
                else:
                    buckets.append([bucket, 1, int(failed), int(slow)])
                calls = sum(b[1] for b in buckets)
                failures = sum(b[2] for b in buckets)
                slows = sum(b[3] for b in buckets)
                trip = calls >= cfg.minimum_calls and (
                    failures / calls >= cfg.failure_rate_threshold
                    or (cfg.slow_call_s > 0 and slows / calls >= cfg.slow_call_rate_threshold)
                )
                if not trip:
                    import json

                    cur.execute(
                        f"UPDATE {table} SET {_W} = %s::jsonb, total_calls = total_calls + 1{failure_cols}, "
                        f"updated_at = %s WHERE key = %s",
                        [json.dumps(buckets), *failure_args, now, key],
                    )
                    return None
                opens = int(opens) + 1
                until = now + timedelta(seconds=_wait_s(cfg, opens))
                cur.execute(
                    f"UPDATE {table} SET state = %s, {_W} = '[]'::jsonb, consecutive_opens = %s, opened_at = %s, "
                    f"open_until = %s, probe_lease_until = NULL, probe_token = '', "
                    f"total_calls = total_calls + 1{failure_cols}, updated_at = %s WHERE key = %s",
                    [CircuitState.OPEN, opens, now, until, *failure_args, now, key],
                )
                log.warning(
                    "executions.circuit_opened",
                    extra={"service": key, "calls": calls, "failures": failures, "slow": slows, "open_until": until.isoformat()},
                )
                return "opened"


TRANSITION_EVENTS = {
    "opened": "circuit.opened",
    "reopened": "circuit.opened",
    "half_opened": "circuit.half_opened",
    "closed": "circuit.closed",
    "reset": "circuit.closed",
}


def _transition(key: str, transition: str, *, run_id: str | None, node_id: str, data: dict[str, Any]) -> None:
    """Log a transition and record it on the run whose call caused it (circuits belong to no run)."""
    event = TRANSITION_EVENTS[transition]
    body = {"service": key, "transition": transition, **data}
    if transition != "opened":  # "opened" is logged with its numbers where it happens
        log.warning(f"executions.{event.replace('.', '_')}", extra={"service": key, "transition": transition, "run_id": run_id})
    if not run_id:
        return
    try:
        from executions.events import event_record

        event_record(run_id=run_id, type=event, node_id=node_id, data=body)
    except (DatabaseError, ValidationError, ValueError) as exc:
        # The transition itself is stored; only its run event is lost (and a
        # bad run id from a caller must never fail the call that tripped it).
        log.error("executions.circuit_event_failed", extra={"service": key, "run_id": run_id, "error": str(exc)})


def breaker_reset(*, key: str, actor: str = "") -> bool:
    """Close a breaker by hand (admin / API). Returns whether a row existed."""
    now = timezone.now()
    updated = CircuitBreaker.objects.filter(key=key).update(
        state=CircuitState.CLOSED, window=[], consecutive_opens=0, opened_at=None, open_until=None,
        probe_lease_until=None, probe_token="", updated_at=now,
    )
    if updated:
        log.warning("executions.circuit_reset", extra={"service": key, "actor": actor})
    return bool(updated)
