"""The same streams served by uvicorn (the other supported ASGI server)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from executions.events import event_record
from tests.executions.monitoring.conftest import token_for
from tests.executions.monitoring.support import AsgiServer, read, refused_code, start_server
from tests.executions.monitoring.test_ws_auth import make_run


@pytest.fixture(scope="module")
def uvicorn_server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[AsgiServer]:
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    server = start_server(db_name, "uvicorn-monitoring", {"ZYRA_WS_REPLAY_PAGE": "5", "ZYRA_WS_HEARTBEAT_S": "30"}, server="uvicorn")
    yield server
    server.stop()


def test_uvicorn_refuses_with_close_codes_and_streams_replay_then_live(
    uvicorn_server: AsgiServer, transactional_db: Any, user: Any, other_user: Any
) -> None:
    srv = uvicorn_server
    run = make_run(user)
    assert refused_code(f"{srv.ws}/ws/runs/{run.id}/", origin=srv.http) == 4401
    assert refused_code(f"{srv.ws}/ws/runs/{run.id}/?token={token_for(other_user)}", origin=srv.http) == 4403

    for i in range(12):
        event_record(run_id=run.id, type="node.started", node_id=f"n{i}", data={"i": i})

    def later() -> None:
        from django.db import connection

        try:
            time.sleep(1.5)
            for i in range(12, 20):
                event_record(run_id=run.id, type="node.succeeded", node_id=f"n{i}", data={"i": i})
        finally:
            connection.close()

    thread = threading.Thread(target=later, daemon=True)
    thread.start()
    stream = read(f"{srv.ws}/ws/runs/{run.id}/", origin=srv.http, subprotocols=["token", token_for(user)], stop_after_seq=20, timeout=20)
    thread.join(10)
    assert stream.subprotocol == "token"
    assert stream.seqs == list(range(1, 21))
    assert stream.replay_done_at is not None
    assert all(t > stream.replay_done_at for t in stream.received_at[12:])
