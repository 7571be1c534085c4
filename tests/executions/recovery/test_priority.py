"""Interactive runs are served before bulk ones waiting in the same queue (broker message priorities)."""

from __future__ import annotations

from typing import Any

from django.utils.dateparse import parse_datetime

from executions import services
from executions.models import NodeRun
from tests.support.factories import make_workflow, transform, wait_run
from tests.support.workers import ProcessGroup


def _first_start(run_id: Any) -> Any:
    nr = NodeRun.objects.get(run_id=run_id, node_id="only")
    return parse_datetime(nr.attempts[0]["started_at"])


def test_interactive_run_overtakes_a_bulk_backlog(rec_group: ProcessGroup, user: Any) -> None:
    wf = make_workflow(user, {"nodes": [transform("only")], "edges": []})
    # No worker yet: the messages wait in the private broker's lists.
    bulk = [services.run_start(workflow=wf, inputs={"i": i}, user=user, trigger="schedule", priority=0).id for i in range(12)]
    interactive = services.run_start(workflow=wf, inputs={"i": "now"}, user=user, trigger="manual", priority=9).id
    rec_group.start_worker("w-prio", queues="io,cpu,sweep", pool="threads", concurrency=1)
    for run_id in [*bulk, interactive]:
        assert wait_run(run_id, timeout=60).status == "succeeded"
    first = _first_start(interactive)
    overtaken = sum(1 for run_id in bulk if _first_start(run_id) > first)
    # Sent last, started ahead of the backlog (at most the one message a worker prefetches may precede it).
    assert overtaken >= 11, overtaken
