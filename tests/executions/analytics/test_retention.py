"""Retention: prune old finished runs in batches, keep daily aggregates, analytics unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from executions import analytics, retention
from executions.models import DailyWorkflowStats, NodeRun, Run, RunEvent
from tests.executions.analytics.history import build

AFTER_D2 = datetime(2026, 11, 4, 1, tzinfo=UTC)  # cutoff (1 day) = 2026-11-03 00:00: both days go
AFTER_D1 = datetime(2026, 11, 3, 12, tzinfo=UTC)  # cutoff (1 day) = 2026-11-02 00:00: only 11-01 goes


@pytest.fixture
def history(user: Any, other_user: Any) -> dict[str, Any]:
    h = build(user, other_user)
    for run in Run.objects.all():
        RunEvent.objects.create(run=run, seq=1, type="run.queued", ts=run.created_at, data={})
    return h


def _figures(user: Any, **params: str) -> dict[str, Any]:
    scope = analytics.scope_from_query(params={"from": "2026-11-01", "to": "2026-11-02", **params}, user=user)
    return analytics.analytics_workflow(scope=scope)


def _exact_parts(data: dict[str, Any]) -> dict[str, Any]:
    """Everything but the duration percentiles, which become histogram estimates after pruning."""
    out = {k: v for k, v in data.items() if k not in {"duration_ms", "node_types", "series"}}
    out["node_types"] = [{k: v for k, v in t.items() if k != "duration_ms"} for t in data["node_types"]]
    out["series"] = [{k: v for k, v in s.items() if k != "p95_ms"} for s in data["series"]]
    return out


@pytest.mark.parametrize("batch_size", [1, 500])
def test_prune_keeps_every_figure(user: Any, staff_user: Any, history: dict[str, Any], batch_size: int) -> None:
    before = {who.pk: _figures(who) for who in (user, staff_user)}
    result = retention.runs_prune(older_than_days=1, batch_size=batch_size, pause_s=0, now=AFTER_D2)
    # Seven finished runs go; the running one stays whatever its age.
    assert result.runs == 7 and result.node_runs == 12 and result.events == 7
    assert result.batches == (7 if batch_size == 1 else 1)
    assert list(Run.objects.values_list("status", flat=True)) == ["running"]
    assert NodeRun.objects.count() == 1 and RunEvent.objects.count() == 1
    for who in (user, staff_user):
        after = _figures(who)
        assert _exact_parts(after) == _exact_parts(before[who.pk])
        d_before, d_after = before[who.pk]["duration_ms"], after["duration_ms"]
        assert d_after["approximate"] is True and d_after["count"] == d_before["count"]
        assert d_after["avg"] == pytest.approx(d_before["avg"], abs=0.5)
        for p in ("p50", "p95", "p99"):
            assert d_after[p] == pytest.approx(d_before[p], rel=0.11)


def test_daily_rows_hold_the_days(user: Any, history: dict[str, Any]) -> None:
    retention.runs_prune(older_than_days=1, pause_s=0, now=AFTER_D1)
    assert Run.objects.count() == 4  # 11-02 (three runs of orders, one of mailer) is younger than the cutoff
    rows = {(r.workflow.name, r.day.isoformat()): r for r in DailyWorkflowStats.objects.select_related("workflow")}
    assert set(rows) == {("orders", "2026-11-01"), ("private", "2026-11-01")}
    orders = rows[("orders", "2026-11-01")]
    assert (orders.runs, orders.succeeded, orders.duration_count, orders.duration_sum_ms) == (3, 3, 3, 600)
    assert (orders.nodes_retried, orders.extra_attempts, orders.deferred_ms) == (1, 1, {"rate_limited": 250})
    # A second pass the next day extends the figures; 11-01 is not counted twice.
    retention.runs_prune(older_than_days=1, pause_s=0, now=AFTER_D2)
    orders.refresh_from_db()
    assert orders.runs == 3
    d2 = DailyWorkflowStats.objects.get(workflow=history["orders"], day="2026-11-02")
    assert (d2.runs, d2.failed, d2.partially_succeeded) == (2, 1, 1)
    assert d2.failing_nodes == {"fetch": {"type": "HTTP_REQUEST", "failures": 2, "codes": {"http_5xx": 2}}}
    assert d2.node_types["CALCULATOR"]["cancelled"] == 1


def test_retention_off_keeps_everything(history: dict[str, Any]) -> None:
    assert retention.runs_prune(older_than_days=0, now=AFTER_D2).runs == 0
    assert Run.objects.count() == 8
    with override_settings(ZYRA_RETENTION_DAYS=0):
        from executions.tasks import prune

        assert prune()["runs"] == 0
    assert Run.objects.count() == 8


def test_beat_task_uses_the_setting_and_is_scheduled(history: dict[str, Any]) -> None:
    from django.conf import settings

    from executions.tasks import prune

    entry: dict[str, Any] = settings.CELERY_BEAT_SCHEDULE["zyra-prune-runs"]
    assert entry["task"] == "executions.prune" and entry["options"]["queue"] == "sweep"
    with override_settings(ZYRA_RETENTION_DAYS=1, ZYRA_RETENTION_PAUSE_S=0):
        out = prune()
    # The history is dated 2026-11-01/02; the real clock decides how much of it is past a one-day cutoff.
    now = datetime.now(UTC)
    expected = 7 if now >= datetime(2026, 11, 4, tzinfo=UTC) else 4 if now >= datetime(2026, 11, 3, tzinfo=UTC) else 0
    assert out["runs"] == expected
    assert Run.objects.count() == 8 - expected


def test_command(history: dict[str, Any]) -> None:
    out = StringIO()
    call_command("prune_runs", "--older-than-days", "36500", "--batch-size", "2", stdout=out)
    assert json.loads(out.getvalue())["runs"] == 0  # nothing is a hundred years old
    with pytest.raises(CommandError, match="at least 1"):
        call_command("prune_runs", "--older-than-days", "0")
    with pytest.raises(CommandError, match="batch-size"):
        call_command("prune_runs", "--older-than-days", "5", "--batch-size", "0")
    out = StringIO()
    with override_settings(ZYRA_RETENTION_DAYS=0):
        call_command("prune_runs", stdout=out)
    assert "retention is off" in out.getvalue()


def test_prune_skips_locked_runs_and_never_waits(transactional_db: Any, user: Any, other_user: Any) -> None:
    """A run locked by someone else (the engine, another pruner) is skipped, not waited for."""
    import threading

    from django.db import connection, transaction

    build(user, other_user)
    locked_id = Run.objects.filter(status="succeeded", workflow__name="orders").order_by("created_at").values_list("id", flat=True)[0]
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Run.objects.select_for_update().get(id=locked_id)
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(10)
        result = retention.runs_prune(older_than_days=1, batch_size=2, pause_s=0, now=AFTER_D2)
        assert result.runs == 6 and Run.objects.filter(id=locked_id).exists()
        assert result.batches >= 3 and result.max_batch_ms < 10_000
    finally:
        release.set()
        t.join(10)
    # Released: the next pass takes it, and the day's figures are complete.
    assert retention.runs_prune(older_than_days=1, pause_s=0, now=AFTER_D2).runs == 1
    assert DailyWorkflowStats.objects.get(workflow__name="orders", day="2026-11-01").runs == 3
