"""Schedules follow the workflow's versions; due ones fire once; missed ticks collapse."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.utils import timezone

from executions.models import Run
from tests.support.factories import make_workflow, node
from tests.support.workers import wait_until
from triggers import services
from triggers.models import Schedule
from workflows.definition import checksum, normalize
from workflows.models import WorkflowVersion


def scheduled(owner: Any, **config: Any) -> Any:
    return make_workflow(owner, {"nodes": [node("tick", "SCHEDULE", config)], "edges": []}, name="sched")


def new_version(wf: Any, nodes: list[dict[str, Any]]) -> None:
    canonical = normalize({"nodes": nodes, "edges": []})
    number = wf.versions.count() + 1
    v = WorkflowVersion.objects.create(workflow=wf, number=number, definition=canonical, submitted=canonical, checksum=checksum(canonical))
    wf.current_version = v
    wf.save(update_fields=["current_version"])


@pytest.mark.django_db
def test_sync_follows_versions(user: Any) -> None:
    wf = scheduled(user, interval_s=60)
    [s] = services.schedule_sync(wf)
    assert s.enabled and s.interval_s == 60 and s.cron == ""
    assert s.next_run_at is not None and timedelta(seconds=30) < s.next_run_at - timezone.now() <= timedelta(seconds=60)
    first_next = s.next_run_at
    # Same timing in a new version: the clock is not reset.
    new_version(wf, [node("tick", "SCHEDULE", {"interval_s": 60, "description": "x"})])
    [s] = services.schedule_sync(wf)
    assert s.next_run_at == first_next
    # Cron in a time zone.
    new_version(wf, [node("tick", "SCHEDULE", {"cron": "0 9 * * *", "timezone": "Europe/Paris"})])
    [s] = services.schedule_sync(wf)
    assert s.next_run_at is not None
    local = s.next_run_at.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (9, 0) and s.interval_s is None and s.next_run_at > timezone.now()
    # Broken config: kept but disabled, with the reason.
    new_version(wf, [node("tick", "SCHEDULE", {"cron": "not a cron"})])
    [s] = services.schedule_sync(wf)
    assert not s.enabled and s.next_run_at is None and "cron" in s.last_error
    # Disabled node or node removed: schedule gone.
    new_version(wf, [node("tick", "SCHEDULE", {"interval_s": 5}, isEnabled=False)])
    assert services.schedule_sync(wf) == [] and not Schedule.objects.exists()
    new_version(wf, [node("tick", "SCHEDULE", {"interval_s": 5}), node("other", "SCHEDULE", {"interval_s": 7, "enabled": False})])
    got = {s.node_id: s.enabled for s in services.schedule_sync(wf)}
    assert got == {"tick": True, "other": False}
    new_version(wf, [node("m", "MANUAL")])
    services.triggers_sync(wf)
    assert not Schedule.objects.exists()


@pytest.mark.django_db
def test_due_schedule_fires_once(user: Any) -> None:
    wf = scheduled(user, interval_s=60, input={"from": "cron"})
    [s] = services.schedule_sync(wf)
    Schedule.objects.filter(pk=s.pk).update(next_run_at=timezone.now() - timedelta(seconds=1))
    runs = services.schedules_fire_due()
    assert len(runs) == 1
    run = Run.objects.get()
    assert run.trigger == "schedule" and run.inputs == {"from": "cron"} and run.workflow_id == wf.pk
    assert services.schedules_fire_due() == []
    s.refresh_from_db()
    assert s.last_run_id == run.pk and s.next_run_at is not None and s.next_run_at > timezone.now() and s.last_error == ""
    assert Run.objects.count() == 1


@pytest.mark.django_db
def test_missed_ticks_fire_once(user: Any) -> None:
    wf = scheduled(user, interval_s=60)
    [s] = services.schedule_sync(wf)
    Schedule.objects.filter(pk=s.pk).update(next_run_at=timezone.now() - timedelta(minutes=10))
    assert len(services.schedules_fire_due()) == 1
    s.refresh_from_db()
    assert s.next_run_at is not None and timezone.now() < s.next_run_at <= timezone.now() + timedelta(seconds=60)
    assert services.schedules_fire_due() == []
    assert Run.objects.count() == 1
    assert "scheduled_at" in Run.objects.get().inputs


@pytest.mark.django_db
def test_catch_up_fires_each_missed_tick(user: Any) -> None:
    wf = scheduled(user, interval_s=60, catch_up=True)
    [s] = services.schedule_sync(wf)
    assert s.catch_up
    Schedule.objects.filter(pk=s.pk).update(next_run_at=timezone.now() - timedelta(seconds=590))
    runs = services.schedules_fire_due()
    assert len(runs) == 10
    assert len({r.idempotency_key for r in runs}) == 10
    assert services.schedules_fire_due() == []


@pytest.mark.django_db
def test_failed_start_spends_the_tick(user: Any) -> None:
    wf = scheduled(user, interval_s=60)
    [s] = services.schedule_sync(wf)
    Schedule.objects.filter(pk=s.pk).update(next_run_at=timezone.now() - timedelta(seconds=1))
    wf.is_active = False
    wf.save()
    assert services.schedules_fire_due() == []
    s.refresh_from_db()
    assert "workflow_archived" in s.last_error and s.next_run_at is not None and s.next_run_at > timezone.now()


@pytest.mark.django_db(transaction=True)
def test_concurrent_firing_claims_each_row_once(user: Any, no_foreign_sweeper: None) -> None:
    # The suite's shared worker runs beat, which would fire these due schedules too.
    workflows = [scheduled(user, interval_s=3600) for _ in range(5)]
    for wf in workflows:
        services.schedule_sync(wf)
    Schedule.objects.update(next_run_at=timezone.now() - timedelta(seconds=5))
    barrier = threading.Barrier(4)
    counts: list[int] = []

    def fire() -> None:
        try:
            barrier.wait(timeout=30)
            counts.append(len(services.schedules_fire_due(limit=2)))
        finally:
            connection.close()

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(counts) == 5
    assert Run.objects.count() == 5
    assert set(Run.objects.values_list("workflow_id", flat=True)) == {wf.pk for wf in workflows}


@pytest.mark.slow
def test_beat_fires_schedule_through_a_real_worker(user: Any, worker: Any, process_group: Any) -> None:
    wf = scheduled(user, interval_s=1)
    services.schedule_sync(wf)
    process_group.start_beat("beat-schedules")
    started = time.monotonic()
    wait_until(lambda: Run.objects.filter(workflow=wf, status="succeeded").exists(), timeout=60, message="a scheduled run")
    assert time.monotonic() - started < 60
    run = Run.objects.filter(workflow=wf).order_by("created_at").first()
    assert run is not None and run.trigger == "schedule"
    # One run per tick at most: a 1 s interval over the elapsed time.
    elapsed = time.monotonic() - started
    assert Run.objects.filter(workflow=wf).count() <= elapsed + 2


@pytest.mark.django_db
def test_a_crashing_schedule_does_not_block_the_others(user: Any, monkeypatch: Any) -> None:
    from executions import services as engine

    bad = scheduled(user, interval_s=60)
    good = scheduled(user, interval_s=60)
    services.schedule_sync(bad)
    services.schedule_sync(good)
    Schedule.objects.filter(workflow=bad).update(next_run_at=timezone.now() - timedelta(seconds=10))
    Schedule.objects.filter(workflow=good).update(next_run_at=timezone.now() - timedelta(seconds=5))
    real = engine.run_start

    def flaky(**kwargs: Any) -> Any:
        if kwargs["workflow"].pk == bad.pk:
            raise RuntimeError("handler bug")
        return real(**kwargs)

    monkeypatch.setattr(engine, "run_start", flaky)
    runs = services.schedules_fire_due(limit=1)
    assert [r.workflow_id for r in runs] == [good.pk]
    s = Schedule.objects.get(workflow=bad)
    assert "RuntimeError: handler bug" in s.last_error and s.next_run_at is not None and s.next_run_at > timezone.now()
