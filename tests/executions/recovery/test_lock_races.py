"""Claims and results that wait behind the run's row lock see what the lock holder committed.

PostgreSQL re-reads only the rows a ``SELECT ... FOR UPDATE`` locks; a node row
read in the same statement as the run's lock comes from the snapshot taken
before the wait. These tests hold the run's lock in one connection, change
the node as the sweeper (or a first claim) would, and make the engine wait
behind it in another connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction

from executions import services
from executions.models import NodeRun, Run
from tests.support.factories import make_workflow, transform


def _run_with_queued_node(user: Any) -> tuple[Run, NodeRun]:
    # No worker consumes this test's broker messages: the node stays queued until we act.
    wf = make_workflow(user, {"nodes": [transform("only")], "edges": []})
    run = services.run_start(workflow=wf, inputs={}, user=user)
    return run, NodeRun.objects.get(run=run, node_id="only")


def _behind_lock(run: Run, change: Callable[[], None], waiter: Callable[[], Any]) -> Any:
    """Hold the run's lock, make ``change``, start ``waiter`` (it blocks on the lock), then commit."""
    locked = threading.Event()
    out: dict[str, Any] = {}

    def holder() -> None:
        try:
            with transaction.atomic():
                Run.objects.select_for_update().get(id=run.id)
                change()
                locked.set()
                time.sleep(0.6)  # the waiter's statement starts (and takes its snapshot) meanwhile
        finally:
            connection.close()

    def wait() -> None:
        locked.wait(10)
        try:
            out["value"] = waiter()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            out["error"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=holder), threading.Thread(target=wait)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert "error" not in out, out
    return out["value"]


def test_late_result_waiting_behind_a_requeue_is_discarded(rec_broker: Any, transactional_db: Any, user: Any) -> None:
    run, nr = _run_with_queued_node(user)
    claim = services.node_claim(node_run_id=nr.id, attempt=1)
    assert claim is not None

    def requeue() -> None:  # what the sweeper does to a lost attempt
        NodeRun.objects.filter(id=nr.id).update(status="queued", attempt=2)

    recorded = _behind_lock(
        run,
        requeue,
        lambda: services.node_complete(node_run_id=nr.id, attempt=1, result=services.Result(kind="success", output={"stale": True})),
    )
    fresh = NodeRun.objects.get(id=nr.id)
    assert recorded is False
    assert (fresh.status, fresh.attempt, fresh.output) == ("queued", 2, None)
    assert not Run.objects.get(id=run.id).events.filter(type="node.succeeded").exists()


def test_duplicate_claim_waiting_behind_the_first_claim_finds_nothing(rec_broker: Any, transactional_db: Any, user: Any) -> None:
    run, nr = _run_with_queued_node(user)

    def first_claim() -> None:  # the first copy of the message took the node
        NodeRun.objects.filter(id=nr.id).update(status="running")

    claim = _behind_lock(run, first_claim, lambda: services.node_claim(node_run_id=nr.id, attempt=1))
    assert claim is None
    assert not Run.objects.get(id=run.id).events.filter(type="node.started").exists()
