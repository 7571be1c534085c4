"""Analytics selectors: run and node figures over a time range, computed in the database.

On PostgreSQL every figure is one aggregate query over the run history
(``percentile_cont`` for the duration percentiles), served by the indexes of
migration ``0002_analytics_indexes``. On SQLite (embedded mode) the same
figures are computed in Python from the rows; ``engine="python"`` forces that
path on PostgreSQL too, which is how the tests prove both agree.

Pruned days (``DailyWorkflowStats``, written by ``executions.retention``) are
folded in: counts add up exactly; when a range includes archived days the
duration percentiles come from mergeable log-scale histograms and are marked
``approximate`` (within one bucket, 10 %).

Definitions (documented in docs/operations.md):
- a run belongs to the range by ``created_at`` (``from`` inclusive, ``to`` exclusive);
- rates are over finished runs: success = succeeded, failure = failed + timed_out,
  partial = partially_succeeded;
- duration = ``finished_at - started_at`` of finished runs that started;
- retries: node runs whose ``attempt`` > 1, and the extra attempts they took;
- deferred time: ``NodeRun.deferred_ms`` (breaker, rate limit; DELAY waits are not
  counted by the engine), grouped by the node's last ``defer_reason``;
- failing nodes: node runs that ended ``failed`` or ``timed_out``, with the
  counts of ``error.code``.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from zyra.errors import ErrorDetail, ZyraError

BUCKETS = ("day", "hour")
MAX_BUCKETS = {"day": 400, "hour": 24 * 31}
DEFAULT_RANGE = timedelta(days=7)
TOP_FAILING = 10
TOP_CODES = 5
FINISHED = ("succeeded", "partially_succeeded", "failed", "cancelled", "timed_out")
RUN_COUNTS = ("succeeded", "failed", "partially_succeeded", "cancelled", "timed_out")
FAILED_NODE = ("failed", "timed_out")
HIST_BASE = 1.1  # histogram buckets grow by 10 %: percentiles from merged days are within 10 %


# --------------------------------------------------------------------------- scope (query parameters)


@dataclass(frozen=True)
class Scope:
    """What a figure covers: ``[start, end)`` by run creation, whose runs, which workflow."""

    start: datetime
    end: datetime
    bucket: str = "day"
    owner_id: int | None = None  # None: everyone (staff)
    workflow_id: uuid.UUID | None = None
    limit: int = 100


def _parse_instant(raw: str, *, end: bool) -> datetime | None:
    """An ISO 8601 datetime, or a date (its midnight UTC; for ``to`` the next midnight: the day is included)."""
    raw = raw.strip()
    # An unencoded "+01:00" offset arrives as " 01:00" once the query string is decoded.
    candidate = raw.replace(" ", "+") if "T" in raw else raw
    try:
        parsed = parse_datetime(candidate) if "T" in raw or " " in raw else None
    except ValueError:
        return None
    if parsed is not None:
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    try:
        day = parse_date(raw)
    except ValueError:
        return None
    if day is None:
        return None
    return datetime.combine(day + timedelta(days=1) if end else day, time.min, tzinfo=UTC)


def scope_from_query(
    *,
    params: Mapping[str, str],
    user: Any,
    workflow_id: uuid.UUID | None = None,
    allow: Iterable[str] = ("from", "to", "bucket", "limit", "workflow"),
    now: datetime | None = None,
) -> Scope:
    """Validate the query string; every problem is reported at once under ``/query/<name>``."""
    allowed = set(allow)
    details: list[ErrorDetail] = []
    for key in params:
        if key not in allowed:
            details.append(ErrorDetail(f"/query/{key}", "unknown_parameter", f"known parameters: {', '.join(sorted(allowed))}"))
    now = now or timezone.now()
    end: datetime | None = now
    start: datetime | None = None
    if params.get("to"):
        end = _parse_instant(params["to"], end=True)
        if end is None:
            details.append(ErrorDetail("/query/to", "invalid_datetime", "an ISO 8601 date or datetime, e.g. 2026-11-25T00:00:00Z"))
    if params.get("from"):
        start = _parse_instant(params["from"], end=False)
        if start is None:
            details.append(ErrorDetail("/query/from", "invalid_datetime", "an ISO 8601 date or datetime, e.g. 2026-11-18"))
    elif end is not None:
        start = end - DEFAULT_RANGE
    bucket = params.get("bucket") or "day"
    if bucket not in BUCKETS:
        details.append(ErrorDetail("/query/bucket", "invalid_choice", "one of day, hour"))
    if start is not None and end is not None and bucket in BUCKETS:
        if start >= end:
            details.append(ErrorDetail("/query/from", "invalid_range", "from must be before to"))
        else:
            step = timedelta(days=1) if bucket == "day" else timedelta(hours=1)
            if (end - start) / step > MAX_BUCKETS[bucket]:
                details.append(
                    ErrorDetail(
                        "/query/to", "range_too_long", f"at most {MAX_BUCKETS[bucket]} {bucket} buckets; narrow the range or use bucket=day"
                    )
                )
    limit = 100
    if params.get("limit"):
        try:
            limit = int(params["limit"])
            if not 1 <= limit <= 1000:
                raise ValueError
        except ValueError:
            details.append(ErrorDetail("/query/limit", "invalid", "an integer from 1 to 1000"))
    if params.get("workflow") and "workflow" in allowed:
        try:
            workflow_id = uuid.UUID(params["workflow"])
        except ValueError:
            details.append(ErrorDetail("/query/workflow", "invalid", "not a UUID"))
    if details:
        raise ZyraError("invalid_query", "The query parameters are invalid.", details)
    assert start is not None and end is not None
    owner_id = None if getattr(user, "is_staff", False) else user.pk
    return Scope(start=start, end=end, bucket=bucket, owner_id=owner_id, workflow_id=workflow_id, limit=limit)


# --------------------------------------------------------------------------- small pure helpers


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks: PostgreSQL's ``percentile_cont``."""
    if not sorted_values:
        return None
    pos = p * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def hist_bucket(ms: float) -> int:
    return math.floor(math.log(max(ms, 0.0) + 1.0) / math.log(HIST_BASE))


def hist_value(bucket: int) -> float:
    """The middle of a bucket, in ms."""
    lo = HIST_BASE**bucket - 1.0
    hi = HIST_BASE ** (bucket + 1) - 1.0
    return (lo + hi) / 2.0


def hist_add(into: dict[str, int], other: Mapping[str, int]) -> dict[str, int]:
    for key, count in other.items():
        into[str(key)] = into.get(str(key), 0) + int(count)
    return into


def hist_of(values: Iterable[float]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        key = str(hist_bucket(v))
        out[key] = out.get(key, 0) + 1
    return out


def hist_percentile(hist: Mapping[str, int], p: float) -> float | None:
    """``percentile_cont`` over the histogram, each value standing at its bucket's middle."""
    total = sum(hist.values())
    if total == 0:
        return None
    ordered = sorted(((int(k), int(v)) for k, v in hist.items() if int(v) > 0))

    def value_at(rank: int) -> float:
        seen = 0
        for bucket, count in ordered:
            seen += count
            if rank < seen:
                return hist_value(bucket)
        return hist_value(ordered[-1][0])

    pos = p * (total - 1)
    lo = math.floor(pos)
    lo_v, hi_v = value_at(lo), value_at(min(lo + 1, total - 1))
    return lo_v + (hi_v - lo_v) * (pos - lo)


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 1)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _duration_block(
    *,
    exact: list[float] | None = None,
    pct: tuple[Any, Any, Any] | None = None,
    count: int = 0,
    total_ms: float = 0.0,
    hist: Mapping[str, int] | None = None,
    max_ms: float | None = None,
) -> dict[str, Any]:
    """Percentiles exact (sorted values or database percentiles) or, with ``hist``, from the histogram."""
    if hist is not None:
        return {
            "count": count,
            "avg": _round(total_ms / count) if count else None,
            "p50": _round(hist_percentile(hist, 0.5)),
            "p95": _round(hist_percentile(hist, 0.95)),
            "p99": _round(hist_percentile(hist, 0.99)),
            "approximate": True,
        }
    if exact is not None:
        pct = (percentile(exact, 0.5), percentile(exact, 0.95), percentile(exact, 0.99))
        count = len(exact)
        total_ms = sum(exact)
    p50, p95, p99 = pct or (None, None, None)
    return {
        "count": count,
        "avg": _round(total_ms / count) if count else None,
        "p50": _round(p50),
        "p95": _round(p95),
        "p99": _round(p99),
        "approximate": False,
    }


def _counts_block(counts: Mapping[str, int]) -> dict[str, Any]:
    runs = int(counts.get("runs", 0))
    finished = sum(int(counts.get(s, 0)) for s in RUN_COUNTS)
    out: dict[str, Any] = {"runs": runs, "finished": finished, "in_progress": runs - finished}
    for s in RUN_COUNTS:
        out[s] = int(counts.get(s, 0))
    out["success_rate"] = _rate(out["succeeded"], finished)
    out["failure_rate"] = _rate(out["failed"] + out["timed_out"], finished)
    out["partial_rate"] = _rate(out["partially_succeeded"], finished)
    return out


def _use_sql(engine: str | None) -> bool:
    if engine == "python":
        return False
    if engine == "sql":
        return True
    return connection.vendor == "postgresql"


def _ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds() * 1000.0)


def _trunc(ts: datetime, bucket: str) -> datetime:
    ts = ts.astimezone(UTC)
    if bucket == "day":
        return ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return ts.replace(minute=0, second=0, microsecond=0)


def _bucket_starts(scope: Scope) -> list[datetime]:
    step = timedelta(days=1) if scope.bucket == "day" else timedelta(hours=1)
    cur = _trunc(scope.start, scope.bucket)
    out = []
    while cur < scope.end:
        out.append(cur)
        cur += step
    return out


# --------------------------------------------------------------------------- archived days


def _archived(scope: Scope) -> list[Any]:
    """Daily rows whose day starts inside the range (a day is archived whole or by whole runs)."""
    from executions.models import DailyWorkflowStats

    first = scope.start.astimezone(UTC).date()
    if datetime.combine(first, time.min, tzinfo=UTC) < scope.start:
        first = first + timedelta(days=1)
    qs = DailyWorkflowStats.objects.filter(day__gte=first, day__lt=_day_after_last(scope))
    if scope.owner_id is not None:
        qs = qs.filter(workflow__owner_id=scope.owner_id)
    if scope.workflow_id is not None:
        qs = qs.filter(workflow_id=scope.workflow_id)
    return list(qs)


def _day_after_last(scope: Scope) -> date:
    end = scope.end.astimezone(UTC)
    last = end.date()
    return last if end == datetime.combine(last, time.min, tzinfo=UTC) else last + timedelta(days=1)


def _archived_counts(rows: Iterable[Any]) -> Counter[str]:
    c: Counter[str] = Counter()
    for row in rows:
        c["runs"] += row.runs
        for s in RUN_COUNTS:
            c[s] += getattr(row, s)
    return c


# --------------------------------------------------------------------------- SQL (PostgreSQL)

_PCTL = "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY {expr}) FILTER (WHERE {cond})"
_RUN_DUR = "extract(epoch FROM (r.finished_at - r.started_at)) * 1000"
_RUN_DONE = "r.started_at IS NOT NULL AND r.finished_at IS NOT NULL AND r.status IN ('succeeded','partially_succeeded','failed','cancelled','timed_out')"
_NODE_DUR = "extract(epoch FROM (n.finished_at - n.started_at)) * 1000"
_NODE_DONE = "n.started_at IS NOT NULL AND n.finished_at IS NOT NULL"


def _where(scope: Scope) -> tuple[str, dict[str, Any]]:
    sql = "r.created_at >= %(start)s AND r.created_at < %(end)s"
    params: dict[str, Any] = {"start": scope.start, "end": scope.end}
    if scope.owner_id is not None:
        sql += " AND r.owner_id = %(owner)s"
        params["owner"] = scope.owner_id
    if scope.workflow_id is not None:
        sql += " AND r.workflow_id = %(wf)s"
        params["wf"] = scope.workflow_id
    return sql, params


def _fetch(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def _run_cols() -> str:
    cols = ["count(*)"] + [f"count(*) FILTER (WHERE r.status = '{s}')" for s in RUN_COUNTS]
    cols += [
        _PCTL.format(expr=_RUN_DUR, cond=_RUN_DONE),
        f"count(*) FILTER (WHERE {_RUN_DONE})",
        f"coalesce(sum({_RUN_DUR}) FILTER (WHERE {_RUN_DONE}), 0)",
    ]
    return ", ".join(cols)


def _run_row(row: tuple[Any, ...]) -> tuple[Counter[str], tuple[Any, Any, Any], int, float]:
    counts: Counter[str] = Counter({"runs": row[0]})
    for i, s in enumerate(RUN_COUNTS):
        counts[s] = row[1 + i]
    pct: tuple[Any, Any, Any] = (row[6][0], row[6][1], row[6][2]) if row[6] else (None, None, None)
    return counts, pct, int(row[7]), float(row[8] or 0)


def _sql_run_hist(scope: Scope, group: str | None = None) -> dict[Any, dict[str, int]]:
    where, params = _where(scope)
    gcol = f"{group}, " if group else ""
    sql = (
        f"SELECT {gcol}floor(ln(greatest({_RUN_DUR}, 0) + 1) / ln({HIST_BASE}))::int AS b, count(*) "
        f"FROM executions_run r WHERE {where} AND {_RUN_DONE} GROUP BY {gcol}b"
    )
    out: dict[Any, dict[str, int]] = defaultdict(dict)
    for row in _fetch(sql, params):
        key = row[0] if group else None
        out[key][str(row[-2])] = int(row[-1])
    return out


# --------------------------------------------------------------------------- run figures


@dataclass
class _RunFigures:
    counts: Counter[str]
    duration: dict[str, Any]


def _run_figures(scope: Scope, archived: list[Any], sql: bool, runs: list[tuple[Any, ...]] | None) -> _RunFigures:
    if sql:
        where, params = _where(scope)
        counts, pct, dcount, dsum = _run_row(_fetch(f"SELECT {_run_cols()} FROM executions_run r WHERE {where}", params)[0])
        if archived:
            hist = _sql_run_hist(scope).get(None, {})
        else:
            return _RunFigures(counts, _duration_block(pct=pct, count=dcount, total_ms=dsum))
    else:
        assert runs is not None
        counts = Counter({"runs": len(runs)})
        durations = []
        for _id, _wf, status, _created, started, finished in runs:
            counts[status] += 1
            if status in FINISHED and (d := _ms(started, finished)) is not None:
                durations.append(d)
        durations.sort()
        if not archived:
            return _RunFigures(counts, _duration_block(exact=durations))
        hist, dcount, dsum = hist_of(durations), len(durations), sum(durations)
    counts.update(_archived_counts(archived))
    for row in archived:
        hist_add(hist, row.duration_hist)
        dcount += row.duration_count
        dsum += row.duration_sum_ms
    return _RunFigures(counts, _duration_block(hist=hist, count=dcount, total_ms=dsum))


def _load_runs(scope: Scope) -> list[tuple[Any, ...]]:
    from executions.models import Run

    qs = Run.objects.filter(created_at__gte=scope.start, created_at__lt=scope.end)
    if scope.owner_id is not None:
        qs = qs.filter(owner_id=scope.owner_id)
    if scope.workflow_id is not None:
        qs = qs.filter(workflow_id=scope.workflow_id)
    return list(qs.order_by().values_list("id", "workflow_id", "status", "created_at", "started_at", "finished_at"))


def _load_nodes(run_ids: list[Any]) -> list[tuple[Any, ...]]:
    from executions.models import NodeRun

    out: list[tuple[Any, ...]] = []
    for i in range(0, len(run_ids), 500):  # SQLite caps the parameters of one statement
        out += (
            NodeRun.objects.filter(run_id__in=run_ids[i : i + 500])
            .order_by()
            .values_list(
                "run_id", "node_id", "type", "status", "attempt", "deferred_ms", "defer_reason", "started_at", "finished_at", "error"
            )
        )
    return out


# --------------------------------------------------------------------------- series


def _series(scope: Scope, archived: list[Any], sql: bool, runs: list[tuple[Any, ...]] | None) -> list[dict[str, Any]]:
    per: dict[datetime, Counter[str]] = defaultdict(Counter)
    p95: dict[datetime, float | None] = {}
    hists: dict[datetime, dict[str, int]] = defaultdict(dict)
    if sql:
        where, params = _where(scope)
        params = {**params, "bucket": scope.bucket}
        rows = _fetch(
            f"SELECT date_trunc(%(bucket)s, r.created_at AT TIME ZONE 'UTC') AS b, {_run_cols()} "
            f"FROM executions_run r WHERE {where} GROUP BY b",
            params,
        )
        for row in rows:
            b = row[0].replace(tzinfo=UTC)
            counts, pct, _c, _s = _run_row(row[1:])
            per[b] = counts
            p95[b] = pct[1]
        if archived and scope.bucket == "day":
            for key, hist in _sql_run_hist(scope, "date_trunc('day', r.created_at AT TIME ZONE 'UTC')").items():
                hists[key.replace(tzinfo=UTC)] = hist
    else:
        assert runs is not None
        durs: dict[datetime, list[float]] = defaultdict(list)
        for _id, _wf, status, created, started, finished in runs:
            b = _trunc(created, scope.bucket)
            per[b]["runs"] += 1
            per[b][status] += 1
            if status in FINISHED and (d := _ms(started, finished)) is not None:
                durs[b].append(d)
        for b, values in durs.items():
            values.sort()
            p95[b] = percentile(values, 0.95)
            hists[b] = hist_of(values)
    if scope.bucket == "day":
        # Archived days: add their counts; their p95 comes from the merged histogram.
        for row in archived:
            b = datetime.combine(row.day, time.min, tzinfo=UTC)
            per[b].update(_archived_counts([row]))
            hists[b] = hist_add(dict(hists.get(b, {})), row.duration_hist)
            p95[b] = hist_percentile(hists[b], 0.95)
    out = []
    for b in _bucket_starts(scope):
        block = _counts_block(per.get(b, Counter()))
        block.pop("in_progress")
        out.append({"bucket": b.isoformat().replace("+00:00", "Z"), **block, "p95_ms": _round(p95.get(b))})
    return out


# --------------------------------------------------------------------------- node figures


def _empty_type() -> dict[str, Any]:
    return {
        "node_runs": 0,
        "succeeded": 0,
        "failed": 0,
        "timed_out": 0,
        "skipped": 0,
        "cancelled": 0,
        "nodes_retried": 0,
        "extra_attempts": 0,
        "deferred_ms": Counter(),
        "durations": [],
        "hist": {},
        "dsum": 0.0,
        "dcount": 0,
    }


def _node_figures_python(nodes: list[tuple[Any, ...]], run_wf: Mapping[Any, Any]) -> dict[str, Any]:
    """Node figures from rows (the SQLite path, and the retention fold)."""
    types: dict[str, dict[str, Any]] = defaultdict(_empty_type)
    failing: dict[tuple[Any, str], dict[str, Any]] = {}
    retried = extra = 0
    deferred: Counter[str] = Counter()
    for run_id, node_id, type_, status, attempt, deferred_ms, reason, started, finished, error in nodes:
        t = types[type_]
        t["node_runs"] += 1
        if status in t:
            t[status] += 1
        if attempt and attempt > 1:
            retried += 1
            extra += attempt - 1
            t["nodes_retried"] += 1
            t["extra_attempts"] += attempt - 1
        if deferred_ms:
            deferred[reason or "unknown"] += deferred_ms
            t["deferred_ms"][reason or "unknown"] += deferred_ms
        if (d := _ms(started, finished)) is not None:
            t["durations"].append(d)
        if status in FAILED_NODE:
            key = (run_wf[run_id], node_id)
            f = failing.setdefault(key, {"type": type_, "failures": 0, "codes": Counter()})
            f["failures"] += 1
            code = error.get("code") if isinstance(error, dict) else None
            f["codes"][str(code or "unknown")] += 1
    return {"types": types, "failing": failing, "nodes_retried": retried, "extra_attempts": extra, "deferred": deferred}


def _node_figures_sql(scope: Scope) -> dict[str, Any]:
    where, params = _where(scope)
    join = f"FROM executions_noderun n JOIN executions_run r ON r.id = n.run_id WHERE {where}"
    types: dict[str, dict[str, Any]] = defaultdict(_empty_type)
    rows = _fetch(
        "SELECT n.type, count(*), "
        + ", ".join(f"count(*) FILTER (WHERE n.status = '{s}')" for s in ("succeeded", "failed", "timed_out", "skipped", "cancelled"))
        + ", count(*) FILTER (WHERE n.attempt > 1), coalesce(sum(n.attempt - 1) FILTER (WHERE n.attempt > 1), 0), "
        + _PCTL.format(expr=_NODE_DUR, cond=_NODE_DONE)
        + f", count(*) FILTER (WHERE {_NODE_DONE}), "
        + f"coalesce(sum({_NODE_DUR}) FILTER (WHERE {_NODE_DONE}), 0) {join} GROUP BY n.type",
        params,
    )
    for row in rows:
        t = types[row[0]]
        for i, key in enumerate(
            ("node_runs", "succeeded", "failed", "timed_out", "skipped", "cancelled", "nodes_retried", "extra_attempts")
        ):
            t[key] = int(row[1 + i])
        t["pct"] = tuple(row[9]) if row[9] else (None, None, None)
        t["dcount"], t["dsum"] = int(row[10]), float(row[11] or 0)
    deferred: Counter[str] = Counter()
    for type_, reason, ms in _fetch(
        f"SELECT n.type, n.defer_reason, sum(n.deferred_ms) {join} AND n.deferred_ms > 0 GROUP BY 1, 2", params
    ):
        deferred[reason or "unknown"] += int(ms)
        types[type_]["deferred_ms"][reason or "unknown"] += int(ms)
    failing: dict[tuple[Any, str], dict[str, Any]] = {}
    for wf, node_id, type_, code, count in _fetch(
        f"SELECT r.workflow_id, n.node_id, min(n.type), coalesce(n.error->>'code', 'unknown'), count(*) {join} "
        "AND n.status IN ('failed', 'timed_out') GROUP BY 1, 2, 4",
        params,
    ):
        f = failing.setdefault((wf, node_id), {"type": type_, "failures": 0, "codes": Counter()})
        f["failures"] += int(count)
        f["codes"][code] += int(count)
    return {
        "types": types,
        "failing": failing,
        "deferred": deferred,
        "nodes_retried": sum(t["nodes_retried"] for t in types.values()),
        "extra_attempts": sum(t["extra_attempts"] for t in types.values()),
    }


def _merge_archived_nodes(fig: dict[str, Any], archived: list[Any]) -> None:
    for row in archived:
        fig["nodes_retried"] += row.nodes_retried
        fig["extra_attempts"] += row.extra_attempts
        fig["deferred"].update({k: int(v) for k, v in row.deferred_ms.items()})
        for node_id, f in row.failing_nodes.items():
            cur = fig["failing"].setdefault((row.workflow_id, node_id), {"type": f.get("type", ""), "failures": 0, "codes": Counter()})
            cur["failures"] += int(f.get("failures", 0))
            cur["codes"].update({k: int(v) for k, v in (f.get("codes") or {}).items()})
        for type_, t in row.node_types.items():
            cur = fig["types"][type_]
            for key in ("node_runs", "succeeded", "failed", "timed_out", "skipped", "cancelled", "nodes_retried", "extra_attempts"):
                cur[key] += int(t.get(key, 0))
            cur["deferred_ms"].update({k: int(v) for k, v in (t.get("deferred_ms") or {}).items()})
            cur["archived_hist"] = hist_add(cur.get("archived_hist", {}), t.get("duration_hist") or {})
            cur["archived_dcount"] = cur.get("archived_dcount", 0) + int(t.get("duration_count", 0))
            cur["archived_dsum"] = cur.get("archived_dsum", 0.0) + float(t.get("duration_sum_ms", 0))


def _sql_node_hists(scope: Scope) -> dict[str, dict[str, int]]:
    where, params = _where(scope)
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for type_, b, count in _fetch(
        f"SELECT n.type, floor(ln(greatest({_NODE_DUR}, 0) + 1) / ln({HIST_BASE}))::int AS b, count(*) "
        f"FROM executions_noderun n JOIN executions_run r ON r.id = n.run_id WHERE {where} AND {_NODE_DONE} GROUP BY 1, 2",
        params,
    ):
        out[type_][str(b)] = int(count)
    return out


def _type_block(type_: str, t: dict[str, Any], live_hist: Mapping[str, int] | None) -> dict[str, Any]:
    if "archived_hist" in t:
        hist = hist_add(dict(live_hist if live_hist is not None else hist_of(t["durations"])), t["archived_hist"])
        live_count = t["dcount"] if "pct" in t else len(t["durations"])
        live_sum = t["dsum"] if "pct" in t else sum(t["durations"])
        duration = _duration_block(hist=hist, count=live_count + t["archived_dcount"], total_ms=live_sum + t["archived_dsum"])
    elif "pct" in t:
        duration = _duration_block(pct=t["pct"], count=t["dcount"], total_ms=t["dsum"])
    else:
        duration = _duration_block(exact=sorted(t["durations"]))
    ended = t["succeeded"] + t["failed"] + t["timed_out"]
    return {
        "type": type_,
        "node_runs": t["node_runs"],
        "succeeded": t["succeeded"],
        "failed": t["failed"],
        "timed_out": t["timed_out"],
        "skipped": t["skipped"],
        "cancelled": t["cancelled"],
        "failure_rate": _rate(t["failed"] + t["timed_out"], ended),
        "duration_ms": duration,
        "retries": {"nodes_retried": t["nodes_retried"], "extra_attempts": t["extra_attempts"]},
        "deferred_ms": {"total": sum(t["deferred_ms"].values()), "by_reason": dict(sorted(t["deferred_ms"].items()))},
    }


def _failing_block(failing: Mapping[tuple[Any, str], dict[str, Any]], names: Mapping[Any, str], limit: int) -> list[dict[str, Any]]:
    ranked = sorted(failing.items(), key=lambda kv: (-kv[1]["failures"], str(kv[0][0]), kv[0][1]))[:limit]
    return [
        {
            "workflow_id": str(wf),
            "workflow": names.get(wf, ""),
            "node_id": node_id,
            "type": f["type"],
            "failures": f["failures"],
            "error_codes": [{"code": c, "count": n} for c, n in sorted(f["codes"].items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CODES]],
        }
        for (wf, node_id), f in ranked
    ]


def _node_figures(scope: Scope, archived: list[Any], sql: bool, runs: list[tuple[Any, ...]] | None) -> dict[str, Any]:
    if sql:
        fig = _node_figures_sql(scope)
    else:
        assert runs is not None
        fig = _node_figures_python(_load_nodes([r[0] for r in runs]), {r[0]: r[1] for r in runs})
    _merge_archived_nodes(fig, archived)
    hists = _sql_node_hists(scope) if sql and any("archived_hist" in t for t in fig["types"].values()) else {}
    fig["type_blocks"] = sorted(
        (_type_block(k, t, hists.get(k, {}) if sql else None) for k, t in fig["types"].items()),
        key=lambda b: (-b["node_runs"], b["type"]),
    )
    return fig


def _names(ids: Iterable[Any]) -> dict[Any, str]:
    from workflows.models import Workflow

    return dict(Workflow.objects.filter(id__in=set(ids)).values_list("id", "name"))


def _meta(scope: Scope) -> dict[str, Any]:
    return {
        "from": scope.start.isoformat().replace("+00:00", "Z"),
        "to": scope.end.isoformat().replace("+00:00", "Z"),
        "bucket": scope.bucket,
    }


# --------------------------------------------------------------------------- selectors


def analytics_workflow(*, scope: Scope, engine: str | None = None) -> dict[str, Any]:
    """Every figure for one workflow (``scope.workflow_id``) or, without one, for all visible runs."""
    sql = _use_sql(engine)
    archived = _archived(scope)
    runs = None if sql else _load_runs(scope)
    rf = _run_figures(scope, archived, sql, runs)
    nf = _node_figures(scope, archived, sql, runs)
    names = _names(wf for wf, _ in nf["failing"])
    return {
        **_meta(scope),
        **_counts_block(rf.counts),
        "duration_ms": rf.duration,
        "retries": {"nodes_retried": nf["nodes_retried"], "extra_attempts": nf["extra_attempts"]},
        "deferred_ms": {"total": sum(nf["deferred"].values()), "by_reason": dict(sorted(nf["deferred"].items()))},
        "top_failing_nodes": _failing_block(nf["failing"], names, TOP_FAILING),
        "node_types": nf["type_blocks"],
        "series": _series(scope, archived, sql, runs),
    }


def analytics_workflows(*, scope: Scope, engine: str | None = None) -> dict[str, Any]:
    """Totals and series over every visible workflow, and one line per workflow (most runs first)."""
    sql = _use_sql(engine)
    archived = _archived(scope)
    runs = None if sql else _load_runs(scope)
    totals = _run_figures(scope, archived, sql, runs)
    per_counts: dict[Any, Counter[str]] = defaultdict(Counter)
    per_duration: dict[Any, dict[str, Any]] = {}
    archived_by_wf: dict[Any, list[Any]] = defaultdict(list)
    for row in archived:
        archived_by_wf[row.workflow_id].append(row)
    if sql:
        where, params = _where(scope)
        rows = _fetch(f"SELECT r.workflow_id, {_run_cols()} FROM executions_run r WHERE {where} GROUP BY r.workflow_id", params)
        hists = _sql_run_hist(scope, "r.workflow_id") if archived else {}
        for row in rows:
            counts, pct, dcount, dsum = _run_row(row[1:])
            per_counts[row[0]] = counts
            per_duration[row[0]] = {"pct": pct, "count": dcount, "sum": dsum, "hist": hists.get(row[0], {})}
    else:
        assert runs is not None
        durs: dict[Any, list[float]] = defaultdict(list)
        for _id, wf, status, _created, started, finished in runs:
            per_counts[wf]["runs"] += 1
            per_counts[wf][status] += 1
            if status in FINISHED and (d := _ms(started, finished)) is not None:
                durs[wf].append(d)
        for wf in per_counts:
            values = sorted(durs.get(wf, []))
            per_duration[wf] = {"exact": values, "hist": hist_of(values), "count": len(values), "sum": sum(values)}
    lines = []
    for wf in set(per_counts) | set(archived_by_wf):
        counts = per_counts[wf]
        dur = per_duration.get(wf, {"exact": [], "hist": {}, "count": 0, "sum": 0.0})
        if archived_by_wf.get(wf):
            rows_ = archived_by_wf[wf]
            counts.update(_archived_counts(rows_))
            hist = dict(dur["hist"])
            for r in rows_:
                hist_add(hist, r.duration_hist)
            duration = _duration_block(
                hist=hist,
                count=dur["count"] + sum(r.duration_count for r in rows_),
                total_ms=dur["sum"] + sum(r.duration_sum_ms for r in rows_),
            )
        elif "exact" in dur:
            duration = _duration_block(exact=dur["exact"])
        else:
            duration = _duration_block(pct=dur["pct"], count=dur["count"], total_ms=dur["sum"])
        lines.append({"workflow_id": str(wf), **_counts_block(counts), "duration_ms": duration})
    names = _names(wf for wf in set(per_counts) | set(archived_by_wf))
    for line in lines:
        line["name"] = names.get(uuid.UUID(line["workflow_id"]), "")
    lines.sort(key=lambda x: (-x["runs"], x["name"], x["workflow_id"]))
    return {
        **_meta(scope),
        "totals": {**_counts_block(totals.counts), "duration_ms": totals.duration},
        "series": _series(scope, archived, sql, runs),
        "workflows": lines[: scope.limit],
    }


def analytics_node_types(*, scope: Scope, engine: str | None = None) -> dict[str, Any]:
    """Per node type: node runs by outcome, duration percentiles, retries, deferred time; and the top failing nodes."""
    sql = _use_sql(engine)
    archived = _archived(scope)
    runs = None if sql else _load_runs(scope)
    nf = _node_figures(scope, archived, sql, runs)
    names = _names(wf for wf, _ in nf["failing"])
    return {
        **_meta(scope),
        "node_types": nf["type_blocks"],
        "top_failing_nodes": _failing_block(nf["failing"], names, TOP_FAILING),
    }
