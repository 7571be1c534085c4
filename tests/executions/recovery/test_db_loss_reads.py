"""Reads a worker makes for an attempt ride out a lost database connection instead of failing the node."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from executions import executor, services
from executions.models import NodeRun
from tests.executions.recovery.support import RedisServer
from tests.support.factories import edge, http, make_workflow
from tests.support.pg import second_connection

URL = "http://127.0.0.1:9/never"  # never called: results are recorded by hand


def _kill_this_connection() -> None:
    """Terminate this process's PostgreSQL backend from another connection (what a restart does to it)."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with second_connection(autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.django_db(transaction=True)
def test_the_upstream_read_rides_out_a_lost_connection(rec_broker: RedisServer, no_foreign_sweeper: None, user: Any) -> None:
    # rec_broker: a private broker no worker consumes, so that this test claims the run's nodes itself.
    d = {"nodes": [http("start", URL), http("a", URL)], "edges": [edge("start", "a")]}
    run = services.run_start(workflow=make_workflow(user, d), inputs={}, user=user)
    start = NodeRun.objects.get(run=run, node_id="start")
    claim = services.node_claim(node_run_id=start.id, attempt=1)
    assert claim is not None
    assert services.node_complete(node_run_id=start.id, attempt=1, result=services.Result(kind="success", output={"x": 1}))
    run.refresh_from_db()
    _kill_this_connection()
    # Before, the read raised OperationalError inside the attempt and the node failed as a handler crash.
    active, outputs = executor._upstream(claim.graph, run, "a", frozenset())
    assert active == {"start": {"x": 1}} and outputs == {"start": {"x": 1}}
