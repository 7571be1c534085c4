"""What the sweeper and the hot path cost PostgreSQL: one cheap candidate query, no index written twice.

At 1,000 runs in flight the sweeper's candidate query had taken a third of a
second every two seconds: with the models' default orderings, its DISTINCT
ran over (run, created_at, topo_index), one row per node. And every node
update that changes a node's status (nearly all of them) writes an entry into
every index of the table, so an index that another one already covers is paid
for on the hot path for nothing.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions import services
from executions.models import NodeRun
from tests.executions.recovery.support import RedisServer
from tests.support.factories import http, make_workflow


def test_the_sweeps_candidate_query_selects_run_ids_only_without_ordering(
    rec_broker: RedisServer, no_foreign_sweeper: None, user: Any
) -> None:
    d = {"nodes": [http(f"n{i}", "http://127.0.0.1:9/x") for i in range(3)], "edges": []}
    run = services.run_start(workflow=make_workflow(user, d), inputs={}, user=user)
    assert NodeRun.objects.filter(run=run, status="queued").count() == 3
    with CaptureQueriesContext(connection) as queries:
        services.sweep()
    candidates = [q["sql"] for q in queries.captured_queries if "DISTINCT" in q["sql"] and "executions_noderun" in q["sql"]]
    assert len(candidates) == 1, [q["sql"] for q in queries.captured_queries]
    sql = candidates[0]
    assert "ORDER BY" not in sql, sql
    selected = sql.split(" FROM ", 1)[0]
    assert selected.count(",") == 0 and '"run_id"' in selected, selected


def _indexes(table: str) -> list[dict[str, Any]]:
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT i.indexrelid::regclass::text, i.indisunique, i.indpred IS NOT NULL, i.indnkeyatts,
                   ARRAY(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(attnum, n)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n),
                   i.indnatts > i.indnkeyatts
            FROM pg_index i WHERE i.indrelid = %s::regclass
            """,
            [table],
        )
        return [
            {"name": name, "unique": unique, "partial": partial, "keys": list(keys), "include": include}
            for name, unique, partial, _n, keys, include in cur.fetchall()
        ]


def test_no_index_on_the_hot_tables_is_covered_by_another(db: None) -> None:
    """A plain index whose key columns start another full index's keys is written on every update for nothing."""
    for table in ("executions_run", "executions_noderun", "executions_runevent"):
        indexes = _indexes(table)
        assert indexes, table
        for a in indexes:
            if a["unique"] or a["partial"] or a["include"]:
                continue
            for b in indexes:
                if b is a or b["partial"]:
                    continue
                assert b["keys"][: len(a["keys"])] != a["keys"], f"{table}: {a['name']} {a['keys']} is covered by {b['name']} {b['keys']}"


def test_the_sweepers_node_indexes_hold_only_the_nodes_in_their_status(db: None) -> None:
    """Partial: an update that moves a node out of (or past) those statuses writes no entry into them."""
    by_name = {i["name"]: i for i in _indexes("executions_noderun")}
    for name, keys in (
        ("noderun_lease_idx", ["lease_until"]),
        ("noderun_next_idx", ["next_attempt_at"]),
        ("noderun_queued_idx", ["dispatched_at"]),
    ):
        assert by_name[name]["partial"] and by_name[name]["keys"] == keys, by_name[name]
