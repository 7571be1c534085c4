"""Retention: delete old finished runs in small batches, folding each batch into daily aggregates first.

Each batch is one short transaction: it takes up to ``batch_size`` finished
runs created before the cutoff (``FOR UPDATE SKIP LOCKED``, so two pruners or
a busy engine never wait on each other), adds their figures to
``DailyWorkflowStats`` (one row per workflow and UTC day, every figure
additive), and deletes their events, node runs and the runs themselves with
one ``DELETE`` each. Nothing holds a lock beyond one batch; a crash between
batches loses nothing and counts nothing twice, because a batch's aggregate
and its deletion commit together.

The cutoff is rounded down to a UTC midnight, so a day is pruned whole (apart
from runs still unfinished, which are pruned, and folded in, on a later pass).
"""

from __future__ import annotations

import logging
import time as _time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from executions import analytics
from executions.engine.states import RUN_TERMINAL
from executions.models import DailyWorkflowStats, NodeRun, Run, RunEvent

log = logging.getLogger("executions.retention")


@dataclass
class PruneResult:
    cutoff: datetime | None
    runs: int = 0
    node_runs: int = 0
    events: int = 0
    batches: int = 0
    days: int = 0  # (workflow, day) aggregates written or extended
    max_batch_ms: float = 0.0  # the longest transaction: how long a batch held its row locks

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "runs": self.runs,
            "node_runs": self.node_runs,
            "events": self.events,
            "batches": self.batches,
            "days": self.days,
            "max_batch_ms": round(self.max_batch_ms, 1),
        }


def retention_cutoff(*, older_than_days: int, now: datetime | None = None) -> datetime:
    """Midnight UTC of the day ``older_than_days`` ago: runs created before it are pruned."""
    moment = (now or timezone.now()).astimezone(UTC) - timedelta(days=older_than_days)
    return datetime.combine(moment.date(), time.min, tzinfo=UTC)


def _empty_day() -> dict[str, Any]:
    return {
        "runs": 0,
        "succeeded": 0,
        "failed": 0,
        "partially_succeeded": 0,
        "cancelled": 0,
        "timed_out": 0,
        "duration_count": 0,
        "duration_sum_ms": 0,
        "duration_hist": {},
        "node_runs": 0,
        "nodes_retried": 0,
        "extra_attempts": 0,
        "deferred_ms": Counter(),
        "failing_nodes": {},
        "node_types": {},
    }


def _fold(runs: list[tuple[Any, ...]], nodes: list[tuple[Any, ...]]) -> dict[tuple[Any, date], dict[str, Any]]:
    """The batch's figures per (workflow, UTC day of creation), in DailyWorkflowStats' shape."""
    key_of: dict[Any, tuple[Any, date]] = {}
    days: dict[tuple[Any, date], dict[str, Any]] = defaultdict(_empty_day)
    for run_id, wf, status, created, started, finished in runs:
        key = (wf, created.astimezone(UTC).date())
        key_of[run_id] = key
        d = days[key]
        d["runs"] += 1
        if status in d:
            d[status] += 1
        ms = analytics._ms(started, finished)
        if ms is not None and status in analytics.FINISHED:
            d["duration_count"] += 1
            d["duration_sum_ms"] += round(ms)
            analytics.hist_add(d["duration_hist"], {str(analytics.hist_bucket(ms)): 1})
    nodes_by_key: dict[tuple[Any, date], list[tuple[Any, ...]]] = defaultdict(list)
    for row in nodes:
        nodes_by_key[key_of[row[0]]].append(row)
    for key, rows in nodes_by_key.items():
        fig = analytics._node_figures_python(rows, {r[0]: key[0] for r in rows})
        d = days[key]
        d["node_runs"] += len(rows)
        d["nodes_retried"] += fig["nodes_retried"]
        d["extra_attempts"] += fig["extra_attempts"]
        d["deferred_ms"].update(fig["deferred"])
        for (_wf, node_id), f in fig["failing"].items():
            d["failing_nodes"][node_id] = {"type": f["type"], "failures": f["failures"], "codes": dict(f["codes"])}
        for type_, t in fig["types"].items():
            durations = t["durations"]
            d["node_types"][type_] = {
                **{
                    k: t[k]
                    for k in ("node_runs", "succeeded", "failed", "timed_out", "skipped", "cancelled", "nodes_retried", "extra_attempts")
                },
                "deferred_ms": dict(t["deferred_ms"]),
                "duration_hist": analytics.hist_of(durations),
                "duration_count": len(durations),
                "duration_sum_ms": round(sum(durations)),
            }
    return days


def _add_counts(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    for key, value in other.items():
        into[key] = int(into.get(key, 0)) + int(value)
    return into


def _merge_into(row: DailyWorkflowStats, d: dict[str, Any]) -> None:
    for field in (
        "runs",
        "succeeded",
        "failed",
        "partially_succeeded",
        "cancelled",
        "timed_out",
        "duration_count",
        "duration_sum_ms",
        "node_runs",
        "nodes_retried",
        "extra_attempts",
    ):
        setattr(row, field, getattr(row, field) + d[field])
    row.duration_hist = analytics.hist_add(dict(row.duration_hist or {}), d["duration_hist"])
    row.deferred_ms = _add_counts(dict(row.deferred_ms or {}), d["deferred_ms"])
    failing = dict(row.failing_nodes or {})
    for node_id, f in d["failing_nodes"].items():
        cur = failing.setdefault(node_id, {"type": f["type"], "failures": 0, "codes": {}})
        cur["failures"] += f["failures"]
        cur["codes"] = _add_counts(dict(cur["codes"]), f["codes"])
    row.failing_nodes = failing
    types = dict(row.node_types or {})
    for type_, t in d["node_types"].items():
        cur = dict(types.get(type_) or {})
        for key, value in t.items():
            if key == "duration_hist":
                cur[key] = analytics.hist_add(dict(cur.get(key) or {}), value)
            elif key == "deferred_ms":
                cur[key] = _add_counts(dict(cur.get(key) or {}), value)
            else:
                cur[key] = int(cur.get(key, 0)) + int(value)
        types[type_] = cur
    row.node_types = types


def _prune_batch(*, cutoff: datetime, batch_size: int, result: PruneResult) -> int:
    started = _time.perf_counter()
    try:
        return _prune_batch_tx(cutoff=cutoff, batch_size=batch_size, result=result)
    finally:
        result.max_batch_ms = max(result.max_batch_ms, (_time.perf_counter() - started) * 1000)


def _prune_batch_tx(*, cutoff: datetime, batch_size: int, result: PruneResult) -> int:
    with transaction.atomic():
        ids = list(
            Run.objects.select_for_update(skip_locked=True)
            .filter(created_at__lt=cutoff, status__in=list(RUN_TERMINAL))
            .order_by("created_at")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return 0
        runs = list(
            Run.objects.filter(id__in=ids).order_by().values_list("id", "workflow_id", "status", "created_at", "started_at", "finished_at")
        )
        nodes = list(
            NodeRun.objects.filter(run_id__in=ids)
            .order_by()
            .values_list(
                "run_id", "node_id", "type", "status", "attempt", "deferred_ms", "defer_reason", "started_at", "finished_at", "error"
            )
        )
        days = _fold(runs, nodes)
        DailyWorkflowStats.objects.bulk_create([DailyWorkflowStats(workflow_id=wf, day=day) for wf, day in days], ignore_conflicts=True)
        rows = {
            (r.workflow_id, r.day): r
            for r in DailyWorkflowStats.objects.select_for_update().filter(
                workflow_id__in={wf for wf, _ in days}, day__in={day for _, day in days}
            )
        }
        for key, d in days.items():
            _merge_into(rows[key], d)
            rows[key].save()
        # Children first, one DELETE each (no signals, no dependents: Django deletes without loading rows).
        result.events += RunEvent.objects.filter(run_id__in=ids).delete()[0]
        result.node_runs += NodeRun.objects.filter(run_id__in=ids).delete()[0]
        result.runs += Run.objects.filter(id__in=ids).delete()[1].get(Run._meta.label, 0)
        result.days += len(days)
        result.batches += 1
    return len(ids)


def runs_prune(
    *,
    older_than_days: int,
    batch_size: int | None = None,
    max_batches: int | None = None,
    pause_s: float | None = None,
    now: datetime | None = None,
) -> PruneResult:
    """Delete finished runs created before the cutoff, keeping their daily aggregates.

    ``older_than_days`` <= 0 keeps everything. ``max_batches`` bounds one call (the
    beat task's tick); ``pause_s`` between batches lets other writers through.
    """
    if older_than_days <= 0:
        return PruneResult(cutoff=None)
    cutoff = retention_cutoff(older_than_days=older_than_days, now=now)
    size = batch_size or settings.ZYRA_RETENTION_BATCH
    pause = settings.ZYRA_RETENTION_PAUSE_S if pause_s is None else pause_s
    result = PruneResult(cutoff=cutoff)
    while max_batches is None or result.batches < max_batches:
        if _prune_batch(cutoff=cutoff, batch_size=size, result=result) < size:
            break
        if pause:
            _time.sleep(pause)
    log.info("executions.runs_pruned", extra=result.as_dict())
    return result
