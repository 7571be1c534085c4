"""Embedded mode: in-memory channel layer and in-process worker, no Redis at all."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from executions.models import Run
from tests.executions.monitoring.conftest import token_for
from tests.executions.monitoring.support import AsgiServer, read, start_server
from tests.executions.monitoring.test_ws_stream import parallel_definition
from tests.support.factories import make_workflow, wait_run


@pytest.fixture
def embedded_server(transactional_db: Any) -> Iterator[AsgiServer]:
    from django.db import connection

    # The stock entry point: with no broker configured, zyra.asgi runs the worker in-process.
    server = start_server(
        connection.settings_dict["NAME"], "daphne-embedded", {"REDIS_URL": "", "CELERY_BROKER_URL": "", "ZYRA_WS_HEARTBEAT_S": "30"}
    )
    yield server
    server.stop()


def test_embedded_server_streams_a_run_executed_in_process(embedded_server: AsgiServer, user: Any) -> None:
    wf = make_workflow(user, parallel_definition(width=17, delay_s=2.0))
    key = token_for(user)
    req = urllib.request.Request(  # noqa: S310 - loopback
        f"{embedded_server.http}/api/workflows/{wf.id}/runs/",
        data=b'{"inputs": {}}',
        method="POST",
        headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        assert resp.status == 202
        run_id = json.loads(resp.read())["id"]
    stream = read(f"{embedded_server.ws}/ws/runs/{run_id}/?token={key}", origin=embedded_server.http, timeout=60)
    run = wait_run(run_id, timeout=30)
    assert run.status == "succeeded", embedded_server.log_tail()
    assert stream.seqs == list(range(1, Run.objects.get(id=run_id).event_seq + 1))
    assert stream.close_code == 1000
    # The fan-out after the delay was streamed live by the in-memory layer (no resync within 30 s).
    live = [e for e, t in zip(stream.events, stream.received_at, strict=True) if t > (stream.replay_done_at or 0)]
    assert any(e["node_id"] == "join" and e["type"] == "node.succeeded" for e in live)
