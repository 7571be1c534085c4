"""Analytics at a million node runs: query times with and without the analytics indexes, and their plans.

Generates (once; ``--regen`` to redo) 100,000 runs x 10 node runs = 1,000,000 node runs over
30 days, 20 workflows of 5 owners, with failures, retries, deferrals and error codes, using
``generate_series`` INSERTs in a dedicated database. Then VACUUM ANALYZE, times every analytics
selector (median of 3), prints the EXPLAIN (ANALYZE, BUFFERS) of the main queries, and times
them again with the analytics indexes of migration 0002 dropped inside a transaction that is
rolled back.

Usage: .venv/bin/python bench/bench_analytics.py [--runs 100000] [--regen] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

os.environ.setdefault("ZYRA_BENCH_DB", "zyra_bench_analytics")
os.environ.setdefault("ZYRA_BENCH_REDIS_DB", "13")

from common import emit, setup_django, table  # noqa: E402

ANALYTICS_INDEXES = ("run_analytics_idx", "noderun_analytics_idx", "noderun_failed_idx")
TYPES = ["HTTP_REQUEST", "CALCULATOR", "DATA_TRANSFORM", "EMAIL", "CONDITION"]


def generate(runs: int) -> float:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from workflows.services import workflow_create

    users = [get_user_model().objects.get_or_create(username=f"analytics{i}")[0] for i in range(5)]
    definition = {"nodes": [{"id": "a", "type": "CALCULATOR", "data": {"config": {"operation": "add", "a": 1, "b": 2}}}], "edges": []}
    wfs = [workflow_create(owner=users[i % 5], name=f"analytics-{i}", definition=definition) for i in range(20)]
    t0 = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        cur.execute(
            """
            INSERT INTO executions_run (id, workflow_id, version_id, owner_id, status, trigger, priority, inputs, event_seq,
                nodes_total, nodes_done, in_flight, ready_waiting, max_parallel, sequential, failed_stop, failed_continue,
                resumes, created_at, started_at, finished_at)
            SELECT gen_random_uuid(), (%(wfs)s::uuid[])[1 + g %% 20], (%(versions)s::bigint[])[1 + g %% 20],
                   (%(owners)s::bigint[])[1 + g %% 20],
                   CASE WHEN g %% 100 < 85 THEN 'succeeded' WHEN g %% 100 < 92 THEN 'failed'
                        WHEN g %% 100 < 97 THEN 'partially_succeeded' WHEN g %% 100 < 99 THEN 'cancelled' ELSE 'timed_out' END,
                   'api', 5, '{}'::jsonb, 30, 10, 10, 0, 0, 16, false, false, 0, 0,
                   c, c + interval '100 milliseconds', c + interval '100 milliseconds' + (50 + random() * 5000) * interval '1 millisecond'
            FROM (SELECT g, now() - random() * interval '30 days' AS c FROM generate_series(1, %(n)s) g) s
            """,
            {
                "wfs": [str(w.id) for w in wfs],
                "versions": [w.current_version_id for w in wfs],
                "owners": [w.owner_id for w in wfs],
                "n": runs,
            },
        )
        cur.execute(
            """
            INSERT INTO executions_noderun (run_id, node_id, type, queue, topo_index, status, attempt, pending_deps, active_in,
                attempts, defer_reason, worker_lost, worker, deferred_ms, dispatched_at, started_at, finished_at, error)
            SELECT r.id, 'n' || k, (%(types)s::text[])[1 + k %% 5], 'io', k,
                   CASE WHEN k = 9 AND r.status IN ('failed', 'partially_succeeded', 'timed_out') THEN 'failed' ELSE 'succeeded' END,
                   CASE WHEN x < 0.05 THEN 3 WHEN x < 0.08 THEN 2 ELSE 1 END, 0, 1,
                   '[]'::jsonb,
                   CASE WHEN x < 0.02 THEN 'rate_limited' WHEN x < 0.03 THEN 'circuit_open' ELSE '' END,
                   0, '',
                   CASE WHEN x < 0.03 THEN (random() * 2000)::bigint ELSE 0 END,
                   r.started_at, r.started_at + k * interval '5 milliseconds',
                   r.started_at + k * interval '5 milliseconds' + (1 + random() * 400) * interval '1 millisecond',
                   CASE WHEN k = 9 AND r.status IN ('failed', 'partially_succeeded', 'timed_out')
                        THEN jsonb_build_object('code', (ARRAY['http_5xx', 'timeout', 'auth'])[1 + (x * 1000)::int %% 3], 'message', 'boom')
                        END
            FROM (SELECT r0.id, r0.status, r0.started_at, k, random() AS x  -- volatile in the select list: one draw per row
                  FROM executions_run r0 CROSS JOIN generate_series(0, 9) k WHERE r0.workflow_id = ANY(%(wfs)s::uuid[])) r
            """,
            {"types": TYPES, "wfs": [str(w.id) for w in wfs]},
        )
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any], reps: int = 3) -> float:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--regen", action="store_true")
    ap.add_argument("--quick", action="store_true", help="10,000 runs (100,000 node runs)")
    args = ap.parse_args()
    if args.quick:
        args.runs = 10_000
        os.environ["ZYRA_BENCH_DB"] = "zyra_bench_analytics_quick"
    import common

    common.BENCH_DB = os.environ["ZYRA_BENCH_DB"]
    setup_django()
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from executions import analytics
    from executions.models import NodeRun, Run
    from workflows.models import Workflow

    figures: dict[str, Any] = {}
    if args.regen:
        NodeRun.objects.all().delete()
        Run.objects.all().delete()
    existing = Run.objects.count()
    if existing < args.runs:
        figures["generate_s"] = round(generate(args.runs - existing), 1)
        with connection.cursor() as cur:
            cur.execute("VACUUM ANALYZE executions_run")
            cur.execute("VACUUM ANALYZE executions_noderun")
    figures["runs"] = Run.objects.count()
    figures["node_runs"] = NodeRun.objects.count()

    staff = get_user_model().objects.get_or_create(username="analytics-staff", defaults={"is_staff": True})[0]
    owner = get_user_model().objects.get(username="analytics0")
    wf = Workflow.objects.filter(owner=owner, name__startswith="analytics-").first()
    assert wf is not None
    now = timezone.now()
    month = {"from": (now - timedelta(days=30)).isoformat(), "to": now.isoformat()}
    day = {"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat(), "bucket": "hour"}
    week = {"from": (now - timedelta(days=7)).isoformat(), "to": now.isoformat()}

    def scope(user: Any, params: dict[str, str], workflow: Any = None) -> analytics.Scope:
        return analytics.scope_from_query(params=params, user=user, workflow_id=workflow.id if workflow else None)

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("staff: workflows, 30 days", lambda: analytics.analytics_workflows(scope=scope(staff, month))),
        ("staff: summary, 30 days", lambda: analytics.analytics_workflow(scope=scope(staff, month))),
        ("staff: node types, 30 days", lambda: analytics.analytics_node_types(scope=scope(staff, month))),
        ("owner: workflows, 30 days", lambda: analytics.analytics_workflows(scope=scope(owner, month))),
        ("owner: one workflow, 30 days", lambda: analytics.analytics_workflow(scope=scope(owner, month, wf))),
        ("owner: one workflow, 1 day by hour", lambda: analytics.analytics_workflow(scope=scope(owner, day, wf))),
        ("staff: summary, 1 day by hour", lambda: analytics.analytics_workflow(scope=scope(staff, day))),
        ("staff: summary, 7 days", lambda: analytics.analytics_workflow(scope=scope(staff, week))),
        ("staff: node types, 1 day", lambda: analytics.analytics_node_types(scope=scope(staff, day))),
    ]
    with_idx = {name: timed(fn) for name, fn in cases}

    s = scope(staff, month)
    where, params = analytics._where(s)
    sd = scope(staff, day)
    where_d, params_d = analytics._where(sd)
    sw = scope(owner, day, wf)
    where_w, params_w = analytics._where(sw)
    plans: dict[str, str] = {}
    explain = {
        "run aggregate (staff, 30 days)": (f"SELECT {analytics._run_cols()} FROM executions_run r WHERE {where}", params),
        "node types (staff, 30 days)": (
            (
                f"SELECT n.type, count(*), count(*) FILTER (WHERE n.attempt > 1), sum(n.deferred_ms) FROM executions_noderun n "
                f"JOIN executions_run r ON r.id = n.run_id WHERE {where} GROUP BY n.type"
            ),
            params,
        ),
        "node types (staff, 1 day)": (
            (
                f"SELECT n.type, count(*), count(*) FILTER (WHERE n.attempt > 1), sum(n.deferred_ms) FROM executions_noderun n "
                f"JOIN executions_run r ON r.id = n.run_id WHERE {where_d} GROUP BY n.type"
            ),
            params_d,
        ),
        "failing nodes (one workflow, 1 day)": (
            (
                f"SELECT r.workflow_id, n.node_id, coalesce(n.error->>'code', 'unknown'), count(*) FROM executions_noderun n "
                f"JOIN executions_run r ON r.id = n.run_id WHERE {where_w} AND n.status IN ('failed', 'timed_out') GROUP BY 1, 2, 3"
            ),
            params_w,
        ),
    }
    with connection.cursor() as cur:
        for name, (sql, p) in explain.items():
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, p)
            plans[name] = "\n".join(r[0] for r in cur.fetchall())

    # Same queries without the analytics indexes: dropped in a transaction that is rolled back.
    without_idx: dict[str, float] = {}
    with transaction.atomic():
        with connection.cursor() as cur:
            for index in ANALYTICS_INDEXES:
                cur.execute(f"DROP INDEX {index}")
        without_idx = {name: timed(fn) for name, fn in cases}
        transaction.set_rollback(True)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_indexes WHERE indexname = ANY(%s)", [list(ANALYTICS_INDEXES)])
        assert cur.fetchone()[0] == len(ANALYTICS_INDEXES), "the rollback restores the indexes"

    for name, plan in plans.items():
        print(f"\nEXPLAIN {name}:\n{plan}")
    table(
        "analytics query times (ms)",
        [(n, f"{with_idx[n]:.0f}", f"{without_idx[n]:.0f}") for n, _ in cases],
        ("query", "with indexes", "without analytics indexes"),
    )
    figures.update({f"ms_{n.replace(':', '').replace(',', '').replace(' ', '_')}": round(with_idx[n], 1) for n, _ in cases})
    figures.update({f"ms_noidx_{n.replace(':', '').replace(',', '').replace(' ', '_')}": round(without_idx[n], 1) for n, _ in cases})
    figures["plans_use_indexes"] = {
        name: [i for i in (*ANALYTICS_INDEXES, "Index Only Scan", "Seq Scan") if i in plan] for name, plan in plans.items()
    }
    emit(figures)


if __name__ == "__main__":
    main()
