"""Restart PostgreSQL mid-run: a throw-away cluster of our own (initdb, a port of 5440-5449), stopped like a crash.

Workers keep their connections across tasks (CONN_MAX_AGE), so every one of
them breaks at once; they must reconnect (health checks, close_old_connections
on errors, the executor's bounded retry of claim/complete) and every run must
finish. This test never touches the suite's database: the runs are created by
a subprocess on the cluster, and the test reads the cluster with psycopg.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.executions.recovery.support import (
    FAST_RECOVERY_ENV,
    TEN_NODE_CALLS,
    PgCluster,
    RedisServer,
    audit_rows,
    calls_by_key,
    free_port,
    jittered,
)
from tests.support.servers import LocalServer
from tests.support.workers import ROOT, ProcessGroup, wait_until, worker_env

RUNS = 8
PORTS = range(5440, 5450)  # ours for throw-away clusters


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    pg = PgCluster(free_port(PORTS))
    pg.init()
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE zyra")
    yield pg
    pg.close()


def _query(pg: PgCluster, sql: str, params: Any = None) -> list[tuple[Any, ...]] | None:
    """Rows, or None while the server is down or restarting."""
    try:
        with psycopg.connect(pg.url("zyra"), connect_timeout=2) as conn:
            return list(conn.execute(sql, params).fetchall())
    except psycopg.OperationalError:
        return None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_runs_complete_across_a_postgres_restart(cluster: PgCluster, private_redis: RedisServer, server: LocalServer) -> None:
    jittered(server, low=0.2, high=0.4)
    if not private_redis.ping():
        private_redis.start()
    private_redis._client().flushall()
    env_extra = {
        **FAST_RECOVERY_ENV,
        "DATABASE_URL": cluster.url("zyra"),
        "CELERY_BROKER_URL": private_redis.url(),
        "REDIS_URL": private_redis.url(),
    }
    setup = subprocess.run(
        [sys.executable, "-m", "tests.executions.recovery.pg_scenario", server.base, str(RUNS)],
        cwd=ROOT,
        env=worker_env("unused", env_extra),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert setup.returncode == 0, setup.stderr[-3000:]
    run_ids = json.loads(setup.stdout.strip().splitlines()[-1])["run_ids"]

    group = ProcessGroup("unused", env_extra)
    try:
        for i in range(2):
            group.start_worker(f"rec-pg-{i}", pool="threads", concurrency=4)
        group.start_beat("rec-pg-beat")
        progress = "SELECT count(*) FROM executions_noderun WHERE status = 'succeeded' AND type = 'HTTP_REQUEST'"
        wait_until(lambda: ((_query(cluster, progress) or [(0,)])[0][0]) >= 6, 120, 0.1, "first calls")
        cluster.restart(down_s=2.0)
        open_runs = "SELECT count(*) FROM executions_run WHERE status IN ('queued', 'running')"
        wait_until(lambda: (_query(cluster, open_runs) or [(1,)])[0][0] == 0, 180, 0.25, "every run to finish")
    finally:
        group.stop_all()

    runs = {str(r): s for r, s in _query(cluster, "SELECT id, status FROM executions_run") or []}
    nodes = [
        {"run_id": str(r), "node_id": n, "status": s, "attempt": a, "attempts": h}
        for r, n, s, a, h in _query(cluster, "SELECT run_id, node_id, status, attempt, attempts FROM executions_noderun") or []
    ]
    events: dict[tuple[str, str], int] = defaultdict(int)
    for r, n in _query(cluster, "SELECT run_id, node_id FROM executions_runevent WHERE type = 'node.succeeded'") or []:
        events[(str(r), n)] += 1
    result = audit_rows(run_ids, runs, nodes, events, calls_by_key(server), TEN_NODE_CALLS)
    assert result.runs == RUNS and result.node_runs == RUNS * 10, result
    assert not result.problems, result.problems[:20]
    # Calls repeat only for attempts given up as lost (leases that lapsed while the database was away).
    assert result.repeats <= result.lost_attempts, result
