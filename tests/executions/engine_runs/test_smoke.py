from __future__ import annotations

from typing import Any

from executions import services
from tests.support.factories import edge, make_workflow, node, statuses, wait_run


def test_diamond_of_triggers_and_merge_runs_each_node_once(worker: Any, user: Any) -> None:
    definition = {
        "nodes": [
            node("start", "MANUAL"),
            node("left", "MERGE"),
            node("right", "MERGE"),
            node("join", "MERGE"),
        ],
        "edges": [edge("start", "left"), edge("start", "right"), edge("left", "join"), edge("right", "join")],
    }
    wf = make_workflow(user, definition)
    run = services.run_start(workflow=wf, inputs={"x": 1}, user=user)
    run = wait_run(run.id)
    assert run.status == "succeeded", statuses(run)
    assert statuses(run) == {"start": "succeeded", "left": "succeeded", "right": "succeeded", "join": "succeeded"}
    assert all(a == 1 for a in run.node_runs.values_list("attempt", flat=True))
    types = list(run.events.values_list("type", flat=True))
    assert types[:2] == ["run.queued", "run.started"]
    assert types[-1] == "run.succeeded"
    assert types.count("node.started") == 4
