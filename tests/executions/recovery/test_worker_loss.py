"""Losing workers: all of them at once, and one that comes back after its attempt was given away."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from typing import Any

import pytest

from executions import services
from executions.models import NodeRun, Run
from tests.executions.recovery.support import TEN_NODE_CALLS, audit, jittered, ten_node_workflow
from tests.support.factories import make_workflow, node
from tests.support.servers import LocalServer, Request
from tests.support.workers import LOG_DIR, ProcessGroup, wait_until

TERMINAL = ["succeeded", "partially_succeeded", "failed", "cancelled", "timed_out"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_every_worker_and_beat_then_start_again(rec_group: ProcessGroup, user: Any, server: LocalServer) -> None:
    jittered(server, low=0.4, high=0.8)
    wf = make_workflow(user, ten_node_workflow(server))
    for i in range(2):
        rec_group.start_worker(f"rec-all-{i}", pool="threads", concurrency=4)
    rec_group.start_beat("rec-all-beat")
    run_ids = [services.run_start(workflow=wf, inputs={"i": i}, user=user).id for i in range(6)]
    wait_until(lambda: NodeRun.objects.filter(run_id__in=run_ids, status="running").count() >= 4, 90, 0.05, "running nodes")
    rec_group.stop_all()  # SIGKILL: every worker and the beat, with nodes in flight
    in_flight = NodeRun.objects.filter(run_id__in=run_ids, status="running").count()
    assert Run.objects.filter(id__in=run_ids, status="running").count() == 6
    time.sleep(1.0)
    for i in range(2):
        rec_group.start_worker(f"rec-all-again-{i}", pool="threads", concurrency=4)
    rec_group.start_beat("rec-all-beat-again")

    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and Run.objects.filter(id__in=run_ids).exclude(status__in=TERMINAL).exists():
        time.sleep(0.25)
    result = audit(run_ids, server, TEN_NODE_CALLS)
    assert not result.problems, result.problems[:20]
    assert result.runs == 6 and result.node_runs == 60
    # The nodes running at the kill were re-queued as worker_lost attempts; only they may have called twice.
    assert result.lost_attempts >= in_flight >= 2, (result, in_flight)
    assert result.repeats <= result.lost_attempts


def _attempt_of(req: Request) -> int:
    return int(req.headers["idempotency-key"].rsplit(":", 1)[1])


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_late_result_of_a_lost_attempt_is_discarded(rec_group: ProcessGroup, user: Any, server: LocalServer) -> None:
    """Attempt 1's worker freezes (SIGSTOP: a long GC pause, a stalled VM); its lease lapses and the sweeper
    gives the node to attempt 2 on another worker. Attempt 1's worker thaws while attempt 2 is still
    running, and its HTTP call returns: that result must be dropped, and attempt 2's kept."""

    def responder(req: Request) -> tuple[int, dict[str, str], bytes]:
        attempt = _attempt_of(req)
        time.sleep(4.0 if attempt == 1 else 3.0)
        return 200, {"Content-Type": "application/json"}, json.dumps({"attempt": attempt}).encode()

    server.route("/slow", responder)
    d = {"nodes": [node("call", "HTTP_REQUEST", {"url": server.url("/slow"), "method": "POST", "json": {}}, timeout_s=30)], "edges": []}
    wf = make_workflow(user, d)
    frozen = f"rec-late-{uuid.uuid4().hex[:8]}"
    rec_group.start_worker(frozen, pool="threads", concurrency=2)
    run = services.run_start(workflow=wf, inputs={}, user=user)
    wait_until(lambda: server.count("/slow") == 1, 60, 0.05, "attempt 1's call")
    os.killpg(rec_group.procs[frozen].pid, signal.SIGSTOP)
    try:
        rec_group.start_worker("rec-late-other", pool="threads", concurrency=2)
        rec_group.start_beat("rec-late-beat")
        wait_until(lambda: server.count("/slow") == 2, 90, 0.05, "attempt 2's call")
    finally:
        os.killpg(rec_group.procs[frozen].pid, signal.SIGCONT)
    nr = NodeRun.objects.get(run=run)
    assert (nr.status, nr.attempt) == ("running", 2)
    # Attempt 1's worker now gets its answer ({"attempt": 1}) and tries to record it; wait until it has.
    log = LOG_DIR / f"{frozen}.log"
    wait_until(lambda: "executions.late_result_discarded" in log.read_text(errors="replace"), 30, 0.1, "the late result")
    nr = NodeRun.objects.get(run=run)
    assert (nr.status, nr.attempt, nr.output) == ("running", 2, None)  # attempt 2 is still running, untouched

    run = Run.objects.get(id=run.id)
    wait_until(lambda: Run.objects.get(id=run.id).status in TERMINAL, 60, 0.1, "the run")
    nr = NodeRun.objects.get(run=run)
    assert Run.objects.get(id=run.id).status == "succeeded"
    assert nr.status == "succeeded" and nr.attempt == 2
    assert nr.output is not None and nr.output["body"] == {"attempt": 2}
    assert [(a["attempt"], a["status"], (a.get("error") or {}).get("code")) for a in nr.attempts] == [
        (1, "failed", "worker_lost"),
        (2, "succeeded", None),
    ]
    assert nr.attempts[0]["worker"].endswith(f":{rec_group.procs[frozen].pid}")
    events = list(run.events.filter(node_id="call").values_list("type", "data__attempt"))
    assert events.count(("node.succeeded", 2)) == 1
    assert [t for t, _ in events].count("node.succeeded") == 1
    assert sorted(_attempt_of(r) for r in server.requests) == [1, 2]


@pytest.mark.timeout(120)
def test_heartbeat_keeps_a_long_node_alive(rec_group: ProcessGroup, user: Any, server: LocalServer) -> None:
    """A node running for several lease periods is never taken for lost while its worker lives."""
    server.slow("/long", 8.0)
    rec_group.start_worker("rec-long", pool="prefork", concurrency=1)
    rec_group.start_beat("rec-long-beat")
    d = {"nodes": [node("call", "HTTP_REQUEST", {"url": server.url("/long"), "method": "POST", "json": {}}, timeout_s=20)], "edges": []}
    run = services.run_start(workflow=make_workflow(user, d), inputs={}, user=user)
    wait_until(lambda: Run.objects.get(id=run.id).status in TERMINAL, 90, 0.1, "the run")
    nr = NodeRun.objects.get(run=run)
    assert Run.objects.get(id=run.id).status == "succeeded"
    assert nr.attempt == 1 and [a["status"] for a in nr.attempts] == ["succeeded"]
    assert server.count("/long") == 1
