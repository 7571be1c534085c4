"""A new run's node runs inserted by ``fastsql.insert_run`` (one JSON parameter) are stored as the ORM stores them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import connection

from executions import fastsql
from executions.models import NodeRun, Run
from tests.support.factories import make_workflow, node


def _node_runs() -> list[NodeRun]:
    when = datetime(2026, 11, 26, 8, 30, 15, 123456, tzinfo=UTC)
    return [
        NodeRun(node_id="start", type="MANUAL", queue="cpu", topo_index=0, status="queued", pending_deps=0, inputs={"a": [1, "x", None]}),
        NodeRun(
            node_id="n-ü 'quoted' \"name\"",
            type="HTTP_REQUEST",
            queue="io",
            topo_index=7,
            pending_deps=3,
            active_in=1,
            inputs=None,
            output={"nested": {"k": 1.5, "t": True}},
            error=None,
            attempts=[{"attempt": 1, "status": "failed"}],
            state={"until": "2026-11-26T09:00:00+00:00"},
            defer_reason="rate_limited",
            worker_lost=2,
            next_attempt_at=when,
            dispatched_at=when,
            deferred_ms=2**40,
            worker="w1@host",
        ),
    ]


def _stored(run: Run) -> dict[str, dict[str, Any]]:
    names = [f.attname for f in NodeRun._meta.concrete_fields if f.attname not in ("id", "run_id")]
    with connection.cursor() as cur:
        # The raw column values, NULL and JSON null told apart.
        cur.execute("SELECT node_id, " + ", ".join(f'"{n}"::text' for n in names) + " FROM executions_noderun WHERE run_id = %s", [run.id])
        return {row[0]: dict(zip(names, row[1:])) for row in cur.fetchall()}


def test_insert_run_stores_node_runs_exactly_as_the_orm_does(db: None, user: Any) -> None:
    wf = make_workflow(user, {"nodes": [node("start", "MANUAL")], "edges": []})

    def new_run() -> Run:
        return Run(workflow=wf, version=wf.current_version, owner=user, inputs={"i": 1})

    fast = new_run()
    fast_rows = _node_runs()
    for nr in fast_rows:
        nr.run = fast
    fastsql.insert_run(fast, fast_rows)
    assert all(nr.pk for nr in fast_rows)
    assert {nr.node_id: nr.pk for nr in fast_rows} == dict(NodeRun.objects.filter(run=fast).values_list("node_id", "id"))

    orm = new_run()
    orm.save()
    orm_rows = _node_runs()
    for nr in orm_rows:
        nr.run = orm
    NodeRun.objects.bulk_create(orm_rows)

    got, want = _stored(fast), _stored(orm)
    assert set(got) == set(want) and len(got) == 2
    for node_id, columns in want.items():
        assert got[node_id] == columns, node_id
    assert got["start"]["output"] is None and got["start"]["inputs"] == '{"a": [1, "x", null]}'
