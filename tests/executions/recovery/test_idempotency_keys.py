"""Side-effecting calls carry ``Idempotency-Key: <run>:<node>:<attempt>`` (executions/resilience/outbound.py).

A receiver that remembers keys can drop the repeat of an attempt it already
served, and tell a retry (new attempt number) from a duplicate delivery.
"""

from __future__ import annotations

from typing import Any

import pytest

from executions import services
from tests.support.factories import edge, make_workflow, node, wait_run
from tests.support.servers import LocalServer
from tests.support.workers import ProcessGroup


def _definition(server: LocalServer, user_headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "MANUAL"),
            node(
                "charge",
                "HTTP_REQUEST",
                {"url": server.url("/charge"), "method": "POST", "json": {"amount": 5}, "headers": user_headers or {}},
                retry={"max_attempts": 3, "backoff_s": 0.1, "jitter": 0},
            ),
            node("notify", "NOTIFICATION", {"url": server.url("/hook"), "message": "charged"}),
            node("look", "HTTP_REQUEST", {"url": server.url("/look"), "method": "GET"}),
        ],
        "edges": [edge("start", "charge"), edge("charge", "notify"), edge("start", "look")],
    }


def _headers(server: LocalServer, path: str, name: str) -> list[str | None]:
    return [r.headers.get(name.lower()) for r in server.requests if r.path.split("?")[0] == path]


@pytest.mark.timeout(120)
def test_http_request_and_notification_send_the_attempts_key(rec_group: ProcessGroup, user: Any, server: LocalServer) -> None:
    server.responses("/charge", [(503, {"busy": True}), (200, {"charged": True})])
    rec_group.start_worker("rec-idem", pool="threads", concurrency=4)
    run = services.run_start(workflow=make_workflow(user, _definition(server)), inputs={}, user=user)
    run = wait_run(run.id, timeout=60)
    assert run.status == "succeeded"
    # The retry is a new attempt, hence a new key; the receiver sees it is not a duplicate delivery.
    assert _headers(server, "/charge", "Idempotency-Key") == [f"{run.id}:charge:1", f"{run.id}:charge:2"]
    assert _headers(server, "/hook", "Idempotency-Key") == [f"{run.id}:notify:1"]
    # A GET has no side effect to protect: no key.
    assert _headers(server, "/look", "Idempotency-Key") == [None]


@pytest.mark.timeout(120)
def test_the_header_name_is_configurable_and_a_node_may_set_its_own(rec_group: ProcessGroup, user: Any, server: LocalServer) -> None:
    rec_group.env_extra["ZYRA_IDEMPOTENCY_HEADER"] = "X-Request-Key"
    rec_group.start_worker("rec-idem-named", pool="threads", concurrency=4)
    d = _definition(server, user_headers={"x-request-key": "from-the-node"})
    run = wait_run(services.run_start(workflow=make_workflow(user, d), inputs={}, user=user).id, timeout=60)
    assert run.status == "succeeded"
    assert _headers(server, "/hook", "X-Request-Key") == [f"{run.id}:notify:1"]
    assert _headers(server, "/hook", "Idempotency-Key") == [None]
    # The node's own header of that name wins (the caller knows its receiver's idempotency scheme).
    assert _headers(server, "/charge", "X-Request-Key") == ["from-the-node"]
