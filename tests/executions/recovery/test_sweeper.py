"""The sweeper: several at once never double-dispatch; the ``recover`` command; deferred nodes woken.

No worker consumes this test's broker: nodes are claimed here (as a worker
would) and their leases expired by hand, so what the sweepers do is all that
happens, and the messages they send can be counted in Redis.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, cast

from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from executions import services
from executions.models import NodeRun, Run
from tests.executions.recovery.support import FAST_RECOVERY_ENV, RedisServer
from tests.support.factories import http, make_workflow
from tests.support.workers import ROOT, wait_until, worker_env

WIDTH = 6


def _claimed_run(user: Any, broker: RedisServer, width: int = WIDTH) -> tuple[Run, list[NodeRun]]:
    """A run whose ``width`` nodes are running with leases that expired (their worker is gone)."""
    d = {"nodes": [http(f"n{i}", "http://127.0.0.1:9/never") for i in range(width)], "edges": []}
    run = services.run_start(workflow=make_workflow(user, d), inputs={}, user=user)
    rows = list(NodeRun.objects.filter(run=run).order_by("node_id"))
    for nr in rows:
        assert services.node_claim(node_run_id=nr.id, attempt=1) is not None
    broker._client().flushall()  # forget the first messages: only the sweepers' count
    NodeRun.objects.filter(run=run).update(lease_until=timezone.now() - timedelta(seconds=1))
    return run, rows


def _assert_requeued_once(run: Run, rows: list[NodeRun], broker: RedisServer) -> None:
    for nr in rows:
        fresh = NodeRun.objects.get(id=nr.id)
        assert (fresh.status, fresh.attempt, fresh.worker_lost) == ("queued", 2, 1), fresh
        assert [a["attempt"] for a in fresh.attempts] == [1]
        assert fresh.attempts[0]["status"] == "failed" and fresh.attempts[0]["error"]["code"] == "worker_lost"
    events = Counter(run.events.filter(type__in=["node.retrying", "node.queued"]).values_list("type", "node_id"))
    for nr in rows:
        assert events[("node.retrying", nr.node_id)] == 1
        assert events[("node.queued", nr.node_id)] == 2  # the first dispatch and the re-queue
    messages = [m for m in broker.queued_messages() if m["task"] == "executions.execute_node"]
    assert sorted(tuple(m["args"]) for m in messages) == sorted((nr.id, 2) for nr in rows)


def test_concurrent_sweeps_requeue_each_lost_node_once(
    rec_broker: RedisServer, no_foreign_sweeper: None, fast_leases: Any, user: Any
) -> None:
    run, rows = _claimed_run(user, rec_broker)
    sweepers = 8
    barrier = threading.Barrier(sweepers)
    reports: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(10)
            reports.append(services.sweep().as_dict())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(sweepers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sum(r["lost"] for r in reports) == WIDTH, reports
    _assert_requeued_once(run, rows, rec_broker)


def test_recover_loops_in_several_processes_requeue_each_node_once(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    db_name = connection.settings_dict["NAME"]
    # A long REQUEUE_AFTER_S: the re-queued nodes (no worker takes them) must not be re-sent during the test.
    env = worker_env(
        db_name, {**FAST_RECOVERY_ENV, "ZYRA_REQUEUE_AFTER_S": "300", "CELERY_BROKER_URL": rec_broker.url(), "REDIS_URL": rec_broker.url()}
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "recover", "--loop", "--interval", "0.02"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    streams: list[dict[str, list[str]]] = [{"out": [], "err": []} for _ in procs]

    def read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    readers = [
        threading.Thread(target=read, args=(getattr(p, f"std{k}"), streams[i][k]), daemon=True)
        for i, p in enumerate(procs)
        for k in ("out", "err")
    ]
    for t in readers:
        t.start()
    try:
        # The machine may be slow: wait until all four loops have started, then give them work together.
        wait_until(
            lambda: all(any(line.startswith("recover: sweeping") for line in s["err"]) for s in streams), 120, 0.1, "four sweeper loops"
        )
        run, rows = _claimed_run(user, rec_broker)
        wait_until(lambda: NodeRun.objects.filter(run=run, status="queued", attempt=2).count() == WIDTH, 60, 0.05, "re-queued nodes")
        time.sleep(1.0)  # every loop has swept the same rows again since
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for t in readers:
            t.join(10)
    outputs = [("".join(s["out"]), "".join(s["err"])[-2000:]) for s in streams]
    sweepers = list(run.events.filter(type="node.retrying").values_list("data__sweeper", flat=True))
    pids = {str(p.pid) for p in procs}
    assert len(sweepers) == WIDTH and all(s.rsplit(":", 1)[1] in pids for s in sweepers), (sweepers, pids, outputs)
    # Printed reports never count a node twice (a loop interrupted right after its sweep may not have printed).
    lost = sum(json.loads(line)["lost"] for out, _ in outputs for line in out.splitlines() if line.startswith("{"))
    assert lost <= WIDTH, outputs
    _assert_requeued_once(run, rows, rec_broker)


def test_recover_command_prints_one_sweep(rec_broker: RedisServer, no_foreign_sweeper: None, fast_leases: Any, user: Any) -> None:
    run, rows = _claimed_run(user, rec_broker, width=2)
    out = io.StringIO()
    call_command("recover", stdout=out)
    assert json.loads(out.getvalue()) == {"lost": 2, "resent": 0, "woken": 0, "timed_out_runs": 0, "started": 0}
    out = io.StringIO()
    call_command("recover", stdout=out)
    assert json.loads(out.getvalue())["lost"] == 0  # nothing left to recover
    _assert_requeued_once(run, rows, rec_broker)


def test_sweeper_resends_a_queued_node_whose_message_was_lost(
    rec_broker: RedisServer, no_foreign_sweeper: None, fast_leases: Any, user: Any
) -> None:
    run = services.run_start(
        workflow=make_workflow(user, {"nodes": [http("n", "http://127.0.0.1:9/x")], "edges": []}), inputs={}, user=user
    )
    rec_broker._client().flushall()  # the broker lost the message
    nr = NodeRun.objects.get(run=run)
    assert services.sweep().resent == 0  # too early: the message may just be waiting in the queue
    NodeRun.objects.filter(id=nr.id).update(dispatched_at=timezone.now() - timedelta(seconds=4))
    report = services.sweep()
    assert report.resent == 1 and report.lost == 0
    fresh = NodeRun.objects.get(id=nr.id)
    assert (fresh.status, fresh.attempt) == ("queued", 1)  # same attempt: a duplicate is harmless
    assert [tuple(m["args"]) for m in rec_broker.queued_messages()] == [(nr.id, 1)]


def test_sweeper_wakes_a_deferred_node_whose_countdown_was_lost(
    rec_broker: RedisServer, no_foreign_sweeper: None, fast_leases: Any, user: Any
) -> None:
    run = services.run_start(
        workflow=make_workflow(user, {"nodes": [http("n", "http://127.0.0.1:9/x")], "edges": []}), inputs={}, user=user
    )
    nr = NodeRun.objects.get(run=run)
    assert services.node_claim(node_run_id=nr.id, attempt=1) is not None
    until = timezone.now() + timedelta(seconds=0.2)
    services.node_complete(
        node_run_id=nr.id, attempt=1, result=services.Result(kind="defer", defer_until=until, defer_reason="rate_limited")
    )
    rec_broker._client().flushall()  # the countdown message is gone
    assert services.sweep().woken == 0  # not due yet (grace of ZYRA_WAKE_GRACE_S)
    time.sleep(1.4)
    assert services.sweep().woken == 1
    fresh = NodeRun.objects.get(id=nr.id)
    assert (fresh.status, fresh.attempt) == ("queued", 1)
    assert [tuple(m["args"]) for m in rec_broker.queued_messages()] == [(nr.id, 1)]


def test_a_lease_is_renewed_only_for_the_attempt_that_holds_it(rec_broker: RedisServer, fast_leases: Any, user: Any) -> None:
    _, rows = _claimed_run(user, rec_broker, width=1)
    nr = rows[0]
    services.sweep()  # attempt 1 is lost; attempt 2 is claimed (elsewhere)
    assert services.node_claim(node_run_id=nr.id, attempt=2) is not None
    before = NodeRun.objects.get(id=nr.id).lease_until
    assert before is not None
    time.sleep(0.05)
    # The worker of attempt 1 comes back and renews "its" lease: that must not extend attempt 2's.
    assert services.node_leases_renew(leases=[(nr.id, 1)]) == 0
    assert NodeRun.objects.get(id=nr.id).lease_until == before
    assert services.node_leases_renew(leases=[(nr.id, 2)]) == 1
    assert cast(datetime, NodeRun.objects.get(id=nr.id).lease_until) > before


def test_a_node_that_keeps_losing_its_worker_fails_after_its_own_budget(
    rec_broker: RedisServer, no_foreign_sweeper: None, fast_leases: Any, user: Any
) -> None:
    fast_leases.ZYRA_WORKER_LOST_MAX = 2
    run, rows = _claimed_run(user, rec_broker, width=1)
    nr = rows[0]
    for attempt in (1, 2, 3):
        if attempt > 1:
            assert services.node_claim(node_run_id=nr.id, attempt=attempt) is not None
            NodeRun.objects.filter(id=nr.id).update(lease_until=timezone.now() - timedelta(seconds=1))
        assert services.sweep().lost == 1
    fresh = NodeRun.objects.get(id=nr.id)
    # Two re-queues (its worker_lost budget), then it fails: a poison pill is not re-queued forever.
    assert (fresh.status, fresh.attempt, fresh.worker_lost) == ("failed", 3, 3)
    assert fresh.error is not None and fresh.error["code"] == "worker_lost"
    assert Run.objects.get(id=run.id).status == "failed"
