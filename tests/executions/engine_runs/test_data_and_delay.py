"""Outputs are validated before successors see them; DELAY never holds a worker thread."""

from __future__ import annotations

import time
from typing import Any

from executions import services
from executions.models import NodeRun
from tests.support.factories import edge, http, make_workflow, node, statuses, wait_run
from tests.support.servers import LocalServer


def test_output_schema_mismatch_fails_the_node_with_the_path(worker: Any, user: Any, server: LocalServer) -> None:
    server.responses("/order", [(200, {"id": "not-a-number"})])
    schema = {"type": "object", "properties": {"body": {"type": "object", "properties": {"id": {"type": "integer"}}}}}
    d = {
        "nodes": [node("start", "MANUAL"), http("fetch", server.url("/order"), output_schema=schema), http("next", server.url("/next"))],
        "edges": [edge("start", "fetch"), edge("fetch", "next")],
    }
    run = wait_run(services.run_start(workflow=make_workflow(user, d), inputs={}, user=user).id)
    fetch = NodeRun.objects.get(run=run, node_id="fetch")
    assert fetch.status == "failed" and fetch.error is not None and fetch.error["code"] == "output_schema"
    assert "/body/id" in fetch.error["message"]
    assert statuses(run)["next"] == "cancelled" and server.count("/next") == 0


def test_whole_string_template_keeps_json_type(worker: Any, user: Any) -> None:
    d = {
        "nodes": [
            node("start", "MANUAL"),
            node("calc", "CALCULATOR", {"expression": "a * b", "variables": {"a": "{{ input.a }}", "b": "{{ input.b }}"}}),
        ],
        "edges": [edge("start", "calc")],
    }
    run = wait_run(services.run_start(workflow=make_workflow(user, d), inputs={"a": 6, "b": 7}, user=user).id)
    calc = NodeRun.objects.get(run=run, node_id="calc")
    assert calc.status == "succeeded", calc.error
    assert calc.output is not None and calc.output["result"] == 42
    assert calc.inputs is not None and calc.inputs["config"]["variables"] == {"a": 6, "b": 7}  # numbers, not "6" and "7"


def test_delays_do_not_occupy_worker_threads(worker: Any, user: Any) -> None:
    # The session worker has 8 threads; 24 parallel 2-second delays would take >= 6 s if each held one.
    width = 24
    d = {
        "nodes": [node("start", "MANUAL")] + [node(f"d{i}", "DELAY", {"seconds": 2}) for i in range(width)] + [node("join", "MERGE")],
        "edges": [edge("start", f"d{i}") for i in range(width)] + [edge(f"d{i}", "join") for i in range(width)],
        "settings": {"max_parallel_nodes": 64},
    }
    t0 = time.monotonic()
    run = wait_run(services.run_start(workflow=make_workflow(user, d), inputs={}, user=user).id, timeout=30)
    elapsed = time.monotonic() - t0
    assert run.status == "succeeded", statuses(run)
    assert elapsed < 5.5, elapsed
    assert run.events.filter(type="node.deferred").count() == width
    for nr in NodeRun.objects.filter(run=run, type="DELAY"):
        assert nr.attempt == 1 and nr.duration_ms is not None and nr.duration_ms >= 1900
