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

import atexit
import json
import logging
import os
import queue
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from executions.models import CircuitBreaker, CircuitState, ServicePolicy

log = logging.getLogger("executions.resilience")

Outcome = Literal["success", "failure", "ignored"]


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


_POLICY_FIELDS = ("rate_per_s", "burst", "failure_rate_threshold", "minimum_calls", "window_s", "open_wait_s")
_CB, _SP = CircuitBreaker._meta.db_table, ServicePolicy._meta.db_table
_LOAD_SQL = (
    f"SELECT b.state, b.open_until, b.probe_lease_until, p.id, {', '.join('p.' + f for f in _POLICY_FIELDS)} "
    f"FROM (SELECT CAST(%s AS varchar(300)) AS k) q LEFT JOIN {_CB} b ON b.key = q.k LEFT JOIN {_SP} p ON p.key = q.k"
)


def service_state_load(*, key: str) -> ServiceState:
    """The key's ServicePolicy overrides and breaker state (two indexed reads, one short transaction).

    Raises OperationalError when storage is unavailable (the caller fails open).
    """
    if connection.vendor == "postgresql":
        # Hot path (every call): one round trip.
        (row,) = _pg_run(_LOAD_SQL, [key], write=False)
        breaker = tuple(row[:3]) if row[0] is not None else None
        policy = tuple(row[4:]) if row[3] is not None else None
    else:
        with transaction.atomic():
            breaker = CircuitBreaker.objects.filter(key=key).values_list("state", "open_until", "probe_lease_until").first()
            policy = ServicePolicy.objects.filter(key=key).values_list(*_POLICY_FIELDS).first()
    return ServiceState(
        key=key,
        policy=ServicePolicySnapshot(*policy) if policy is not None else None,
        breaker=BreakerSnapshot(*breaker) if breaker is not None else None,
    )


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


def _lock_timeout() -> None:
    """Transaction-local limits (PostgreSQL): a stuck row lock or a sick database costs a
    worker at most ZYRA_BREAKER_DB_TIMEOUT_MS before the fail-open policy takes over.
    (Embedded SQLite serialises writers itself and has no such settings.)"""
    if connection.vendor != "postgresql":
        return
    ms = f"{int(settings.ZYRA_BREAKER_DB_TIMEOUT_MS)}ms"
    with connection.cursor() as cur:
        # synchronous_commit off: breaker bookkeeping is advisory statistics, so a
        # PostgreSQL crash may lose its last few hundred ms of counts - in
        # exchange its commits do not wait for the WAL flush on every call.
        cur.execute(
            "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true), "
            "set_config('synchronous_commit', 'off', true)",
            [ms, ms],
        )


def _pg_run(sql: str, params: list[Any], *, write: bool) -> list[tuple[Any, ...]]:
    """One statement with the breaker's transaction-local limits, in ONE round trip when possible.

    Outside any transaction, the ``SET LOCAL``s and the statement go as one
    multi-statement string, which PostgreSQL runs as one implicit transaction
    (Django's psycopg 3 cursors bind parameters client-side, which allows it).
    Inside a caller's transaction, or with server-side binding, it falls back
    to a savepoint and separate statements.
    """
    ms = int(settings.ZYRA_BREAKER_DB_TIMEOUT_MS)
    prefix = f"SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {ms}; "
    if write:
        prefix += "SET LOCAL synchronous_commit = off; "
    server_binding = bool((connection.settings_dict.get("OPTIONS") or {}).get("server_side_binding"))
    if connection.in_atomic_block or server_binding:
        with transaction.atomic():
            _lock_timeout()
            with connection.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
    with connection.cursor() as cur:
        cur.execute(prefix + sql, params)
        while cur.description is None and cur.nextset():
            pass
        return list(cur.fetchall()) if cur.description else []


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
        self,
        key: str,
        snapshot: BreakerSnapshot | None,
        *,
        call_timeout_s: float,
        now: datetime | None = None,
        run_id: str | None = None,
        node_id: str = "",
    ) -> Permit:
        """Admit a call or raise CircuitOpen. In half-open, at most one caller gets the probe."""
        if snapshot is None or snapshot.state == CircuitState.CLOSED:
            return Permit(key, None)
        now = now or timezone.now()
        self.check(key, snapshot, now=now)
        token = secrets.token_hex(16)
        lease_until = now + timedelta(seconds=call_timeout_s + self.config.probe_grace_s)
        lease = {"state": CircuitState.HALF_OPEN, "probe_token": token, "probe_lease_until": lease_until, "updated_at": now}
        rows = CircuitBreaker.objects.filter(key=key)
        current: tuple[Any, ...] | None = None
        try:
            with transaction.atomic():
                _lock_timeout()
                # The whole arbitration: conditional UPDATEs; only a caller whose UPDATE
                # matched a row wins (a concurrent loser re-evaluates after the winner
                # commits and matches nothing).
                from_open = rows.filter(state=CircuitState.OPEN, open_until__lte=now).update(**lease)
                won = bool(from_open) or bool(
                    rows.filter(state=CircuitState.HALF_OPEN)
                    .filter(Q(probe_lease_until__isnull=True) | Q(probe_lease_until__lte=now))
                    .update(**lease)
                )
                if not won:
                    current = rows.values_list("state", "open_until", "probe_lease_until").first()
        except (OperationalError, InterfaceError) as exc:
            _storage_failed("acquire", key, exc)
            return Permit(key, None, storage_ok=False)
        if won:
            if from_open:
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
        self,
        permit: Permit,
        outcome: Outcome,
        *,
        duration_s: float = 0.0,
        error: str = "",
        now: datetime | None = None,
        run_id: str | None = None,
        node_id: str = "",
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

    def record_later(
        self,
        permit: Permit,
        outcome: Outcome,
        *,
        duration_s: float = 0.0,
        error: str = "",
        run_id: str | None = None,
        node_id: str = "",
    ) -> None:
        """``record`` off the call's critical path when that is safe (see ``_WriteBehind``).

        Probe outcomes, and anything inside a caller's transaction (whose
        commit decides whether the write happens at all), stay synchronous.
        """
        if (
            permit.probe_token is not None
            or outcome == "ignored"
            or not settings.ZYRA_BREAKER_WRITE_BEHIND
            or connection.vendor != "postgresql"
            or connection.in_atomic_block
        ):
            self.record(permit, outcome, duration_s=duration_s, error=error, run_id=run_id, node_id=node_id)
            return
        slow = self.config.slow_call_s > 0 and duration_s >= self.config.slow_call_s
        _writer.submit(_Pending(self, permit.key, outcome == "failure", slow, error, timezone.now(), run_id, node_id))

    def _record_probe(self, permit: Permit, outcome: Outcome, *, error: str, now: datetime) -> str | None:
        mine = CircuitBreaker.objects.filter(key=permit.key, state=CircuitState.HALF_OPEN, probe_token=permit.probe_token)
        with transaction.atomic():
            _lock_timeout()
            if outcome == "ignored":
                # The probe never reached the service: free the slot for another caller now.
                mine.update(probe_lease_until=now, probe_token="", updated_at=now)
                return None
            if outcome == "success":
                closed = mine.update(
                    state=CircuitState.CLOSED,
                    window=[],
                    consecutive_opens=0,
                    opened_at=None,
                    open_until=None,
                    probe_lease_until=None,
                    probe_token="",
                    total_calls=F("total_calls") + 1,
                    updated_at=now,
                )
                return "closed" if closed else None
            opens = mine.select_for_update().values_list("consecutive_opens", flat=True).first()
            if opens is None:
                return None  # our lease lapsed and another probe owns the decision now
            opens += 1
            until = now + timedelta(seconds=_wait_s(self.config, opens))
            mine.update(
                state=CircuitState.OPEN,
                window=[],
                consecutive_opens=opens,
                opened_at=now,
                open_until=until,
                probe_lease_until=None,
                probe_token="",
                total_calls=F("total_calls") + 1,
                total_failures=F("total_failures") + 1,
                last_failure_at=now,
                last_failure=error[:2000],
                updated_at=now,
            )
            return "reopened"

    def _record_call_pg(self, key: str, failed: bool, slow: bool, *, error: str, now: datetime, bucket: int, horizon: int) -> str | None:
        """PostgreSQL: one round trip per call; returns "missing" when the row does not exist yet."""
        return self._record_counts_pg(key, 1, int(failed), int(slow), error=error, now=now, bucket=bucket, horizon=horizon)

    def _record_counts_pg(
        self, key: str, calls: int, failed: int, slow: int, *, error: str, now: datetime, bucket: int, horizon: int
    ) -> str | None:
        sql = _RECORD_SQL.format(cb=_CB, w='"window"', elem=_ELEM.format(w='"window"'))
        params = {
            "horizon": horizon,
            "bucket": bucket,
            "calls": calls,
            "failed": failed,
            "slow": slow,
            "now": now,
            "error": error[:2000],
            "key": key,
        }
        rows = _pg_run(sql, params, write=True)  # type: ignore[arg-type]
        if not rows:
            return "missing"
        state, opens, w_calls, failures, slows = rows[0]
        if state != CircuitState.CLOSED:
            return None  # admitted before the breaker opened: counted, decides nothing
        if not _trips(self.config, int(w_calls), int(failures), int(slows)):
            return None
        opens = int(opens) + 1
        until = now + timedelta(seconds=_wait_s(self.config, opens))
        with transaction.atomic():
            _lock_timeout()
            # Conditional: of two callers that both saw the window trip, one opens it.
            opened = CircuitBreaker.objects.filter(key=key, state=CircuitState.CLOSED).update(
                state=CircuitState.OPEN,
                window=[],
                consecutive_opens=F("consecutive_opens") + 1,
                opened_at=now,
                open_until=until,
                probe_lease_until=None,
                probe_token="",
                updated_at=now,
            )
        if not opened:
            return None
        log.warning(
            "executions.circuit_opened",
            extra={"service": key, "calls": w_calls, "failures": failures, "slow": slows, "open_until": until.isoformat()},
        )
        return "opened"

    def _record_call(self, key: str, failed: bool, slow: bool, *, error: str, now: datetime) -> str | None:
        cfg = self.config
        epoch = int(now.timestamp())
        bucket = epoch - epoch % cfg.bucket_s
        horizon = epoch - cfg.window_s
        if connection.vendor == "postgresql":
            fast = self._record_call_pg(key, failed, slow, error=error, now=now, bucket=bucket, horizon=horizon)
            if fast != "missing":
                return fast
        rows = CircuitBreaker.objects.filter(key=key)
        with transaction.atomic():
            _lock_timeout()
            current = _locked_row(key)
            if current is None:
                # First call ever to this service: create the row (a concurrent creator is fine).
                CircuitBreaker.objects.bulk_create([CircuitBreaker(key=key, updated_at=now)], ignore_conflicts=True)
                current = _locked_row(key)
                assert current is not None
            state, window, opens = current
            changes: dict[str, Any] = {"total_calls": F("total_calls") + 1, "updated_at": now}
            if failed:
                changes.update(total_failures=F("total_failures") + 1, last_failure_at=now, last_failure=error[:2000])
            if state != CircuitState.CLOSED:
                # Admitted before the breaker opened: count it, decide nothing.
                rows.update(**changes)
                return None
            buckets = [b for b in (window or []) if isinstance(b, list) and len(b) == 4 and b[0] > horizon]
            if buckets and buckets[-1][0] == bucket:
                buckets[-1] = [bucket, buckets[-1][1] + 1, buckets[-1][2] + int(failed), buckets[-1][3] + int(slow)]
            else:
                buckets.append([bucket, 1, int(failed), int(slow)])
            calls = sum(b[1] for b in buckets)
            failures = sum(b[2] for b in buckets)
            slows = sum(b[3] for b in buckets)
            if not _trips(cfg, calls, failures, slows):
                rows.update(window=buckets, **changes)
                return None
            opens = int(opens) + 1
            until = now + timedelta(seconds=_wait_s(cfg, opens))
            rows.update(
                state=CircuitState.OPEN,
                window=[],
                consecutive_opens=opens,
                opened_at=now,
                open_until=until,
                probe_lease_until=None,
                probe_token="",
                **changes,
            )
        log.warning(
            "executions.circuit_opened",
            extra={"service": key, "calls": calls, "failures": failures, "slow": slows, "open_until": until.isoformat()},
        )
        return "opened"


def _trips(cfg: BreakerConfig, calls: int, failures: int, slows: int) -> bool:
    """Resilience4j's rule: enough calls in the window, and too many of them failed (or were slow)."""
    return calls >= cfg.minimum_calls and (
        failures / calls >= cfg.failure_rate_threshold or (cfg.slow_call_s > 0 and slows / calls >= cfg.slow_call_rate_threshold)
    )


# The every-call write on PostgreSQL as ONE statement: roll the window in SQL
# (drop buckets older than the horizon, bump or append the current bucket) and
# count, under the row lock the UPDATE itself takes. A concurrent writer's
# UPDATE waits for the lock and then re-evaluates against the new row, so no
# outcome is lost. The window only moves while the breaker is closed.
_ELEM = "jsonb_array_elements(b.{w}) e"
_RECORD_SQL = """
UPDATE {cb} AS b SET
  {w} = CASE WHEN b.state = 'closed' THEN
      COALESCE((SELECT jsonb_agg(e ORDER BY (e->>0)::bigint) FROM {elem}
                WHERE (e->>0)::bigint > %(horizon)s AND (e->>0)::bigint <> %(bucket)s), '[]'::jsonb)
      || jsonb_build_array(jsonb_build_array(
           %(bucket)s,
           %(calls)s + COALESCE((SELECT SUM((e->>1)::int) FROM {elem} WHERE (e->>0)::bigint = %(bucket)s), 0),
           %(failed)s + COALESCE((SELECT SUM((e->>2)::int) FROM {elem} WHERE (e->>0)::bigint = %(bucket)s), 0),
           %(slow)s + COALESCE((SELECT SUM((e->>3)::int) FROM {elem} WHERE (e->>0)::bigint = %(bucket)s), 0)))
    ELSE b.{w} END,
  total_calls = b.total_calls + %(calls)s,
  total_failures = b.total_failures + %(failed)s,
  last_failure_at = CASE WHEN %(failed)s > 0 THEN %(now)s ELSE b.last_failure_at END,
  last_failure = CASE WHEN %(failed)s > 0 THEN %(error)s ELSE b.last_failure END,
  updated_at = %(now)s
WHERE b.key = %(key)s
RETURNING b.state, b.consecutive_opens,
  (SELECT COALESCE(SUM((e->>1)::int), 0) FROM {elem}),
  (SELECT COALESCE(SUM((e->>2)::int), 0) FROM {elem}),
  (SELECT COALESCE(SUM((e->>3)::int), 0) FROM {elem})
"""


def _locked_row(key: str) -> tuple[Any, ...] | None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(f'SELECT state, "window", consecutive_opens FROM {_CB} WHERE key = %s FOR UPDATE', [key])
            row = cur.fetchone()
        if row is not None and isinstance(row[1], str):
            row = (row[0], json.loads(row[1]), row[2])
        return tuple(row) if row is not None else None
    return CircuitBreaker.objects.filter(key=key).select_for_update().values_list("state", "window", "consecutive_opens").first()


@dataclass(frozen=True)
class _Pending:
    breaker: Breaker
    key: str
    failed: bool
    slow: bool
    error: str
    now: datetime
    run_id: str | None
    node_id: str


IDLE_CLOSE_S = 60.0


class _CloseConnection(threading.Event):
    """Queue marker: close the writer's DB connection once everything before it is written."""


def _urgent(item: object) -> bool:
    """A failure or a slow call (either may open the breaker), or a flush or close request."""
    return not isinstance(item, _Pending) or item.failed or item.slow


def _drain(q: queue.SimpleQueue[Any], batch: list[Any]) -> None:
    """Add to ``batch`` what is queued now, up to 1,000 items in all."""
    while len(batch) < 1000:
        try:
            batch.append(q.get_nowait())
        except queue.Empty:
            return


def _gather(q: queue.SimpleQueue[Any], first: Any) -> list[Any]:
    """``first`` and what queues behind it: everything already queued, and successes for up to
    ZYRA_BREAKER_WRITE_WINDOW_MS more, unless a failure, a slow call or a flush arrives (then what has
    queued is written at once, so the counts a failure is judged on hold every success before it)."""
    batch = [first]
    _drain(q, batch)
    window = float(settings.ZYRA_BREAKER_WRITE_WINDOW_MS) / 1000.0
    if window <= 0 or any(_urgent(b) for b in batch):
        return batch
    deadline = time.monotonic() + window
    while len(batch) < 1000 and (remaining := deadline - time.monotonic()) > 0:
        try:
            batch.append(q.get(timeout=remaining))
        except queue.Empty:
            break
        if _urgent(batch[-1]):
            _drain(q, batch)
            break
    return batch


class _WriteBehind:
    """One writer thread per process for the outcomes of calls admitted while CLOSED.

    Why: that write is the one per-call cost that cannot be avoided, and on a
    busy machine every blocking round trip on the call's path costs far more
    than the statement itself. The writer takes what has queued up, folds it
    per (service, bucket) into ONE ``UPDATE`` each, and detects the opening
    there. Successes wait up to ZYRA_BREAKER_WRITE_WINDOW_MS for more to fold
    in (every call to one service updates the same row: at 100 calls/s, one
    UPDATE and commit per call or two had been a sixth of PostgreSQL's time);
    a failure, a slow call or a flush writes what has queued at once.
    Consequences, accepted: a breaker opens a few milliseconds after
    the failure that trips it instead of within the failing call, the
    success counts it is judged on lag by at most the window, and a
    process killed with SIGKILL loses the outcomes still queued (statistics,
    not state). Admission decisions - the probe lease and its outcome - never
    go through here. ``breaker_flush()`` waits for the queue to drain (tests,
    shutdown; also registered with ``atexit``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Pending | threading.Event] | None = None
        self._pid: int | None = None

    def _ensure(self) -> queue.SimpleQueue[_Pending | threading.Event]:
        if self._queue is None or self._pid != os.getpid():
            with self._lock:
                if self._queue is None or self._pid != os.getpid():
                    q: queue.SimpleQueue[_Pending | threading.Event] = queue.SimpleQueue()
                    threading.Thread(target=self._run, args=(q,), name="zyra-breaker-writer", daemon=True).start()
                    if self._pid is None:
                        atexit.register(self.flush)
                    self._queue, self._pid = q, os.getpid()
        return self._queue

    def submit(self, item: _Pending) -> None:
        self._ensure().put(item)

    def flush(self, timeout: float = 5.0) -> bool:
        if self._queue is None or self._pid != os.getpid():
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close_connection(self, timeout: float = 5.0) -> bool:
        """Drain the queue, then have the writer close its DB connection (test teardown, shutdown)."""
        if self._queue is None or self._pid != os.getpid():
            return True
        done = _CloseConnection()
        self._queue.put(done)
        return done.wait(timeout)

    def _run(self, q: queue.SimpleQueue[_Pending | threading.Event]) -> None:
        from django.db import connection as thread_connection

        while True:
            try:
                first = q.get(timeout=IDLE_CLOSE_S)
            except queue.Empty:
                thread_connection.close()  # idle: give the connection back; reopened on the next batch
                continue
            batch = _gather(q, first)
            pending = [b for b in batch if isinstance(b, _Pending)]
            if pending:
                self._write(pending)
            for b in batch:
                if isinstance(b, _CloseConnection):
                    thread_connection.close()
                if isinstance(b, threading.Event):
                    b.set()

    def _write(self, pending: list[_Pending]) -> None:
        from django.db import close_old_connections

        close_old_connections()  # this thread's connection: drop it if broken or past its age
        groups: dict[tuple[str, int, BreakerConfig], list[_Pending]] = {}
        for item in pending:
            epoch = int(item.now.timestamp())
            bucket = epoch - epoch % item.breaker.config.bucket_s
            groups.setdefault((item.key, bucket, item.breaker.config), []).append(item)
        for (key, bucket, config), items in groups.items():
            failures = [i for i in items if i.failed]
            last = failures[-1] if failures else items[-1]
            now = max(i.now for i in items)
            error = last.error if failures else ""
            slow = sum(i.slow for i in items)
            try:
                b = items[0].breaker
                transition = b._record_counts_pg(
                    key, len(items), len(failures), slow, error=error, now=now, bucket=bucket, horizon=bucket - config.window_s
                )
                if transition == "missing":
                    CircuitBreaker.objects.bulk_create([CircuitBreaker(key=key, updated_at=now)], ignore_conflicts=True)
                    transition = b._record_counts_pg(
                        key, len(items), len(failures), slow, error=error, now=now, bucket=bucket, horizon=bucket - config.window_s
                    )
            except (OperationalError, InterfaceError) as exc:
                _storage_failed("record", key, exc)
                continue
            except Exception:  # noqa: BLE001 - the writer must outlive any single bad batch
                log.exception("executions.breaker_writer_failed", extra={"service": key})
                continue
            if transition in ("opened",):
                _transition(
                    key, transition, run_id=last.run_id, node_id=last.node_id, data={"error": last.error[:300]} if last.error else {}
                )


_writer = _WriteBehind()


def breaker_flush(timeout: float = 5.0) -> bool:
    """Wait until this process' queued breaker outcomes are stored. Returns False on timeout."""
    return _writer.flush(timeout)


def breaker_writer_close(timeout: float = 5.0) -> bool:
    """Flush, then close the write-behind thread's DB connection (it reopens on demand)."""
    return _writer.close_connection(timeout)


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
        state=CircuitState.CLOSED,
        window=[],
        consecutive_opens=0,
        opened_at=None,
        open_until=None,
        probe_lease_until=None,
        probe_token="",
        updated_at=now,
    )
    if updated:
        log.warning("executions.circuit_reset", extra={"service": key, "actor": actor})
    return bool(updated)
