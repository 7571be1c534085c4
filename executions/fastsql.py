"""Hand-written SQL for the hot path (claim and completion of every node).

The ORM builds each statement anew (a CASE per field and row for
``bulk_update``); at two transactions per node that cost more than the
database work itself. These helpers issue the same statements directly on
PostgreSQL and fall back to the ORM elsewhere (SQLite, embedded mode).
Semantics are unchanged: same rows, same values, same locks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import F, Field, JSONField, Model

from executions.models import NodeRun, Run, RunEvent


def _pg() -> bool:
    return connection.vendor == "postgresql"


@cache
def _fields(model: type[Model]) -> tuple[Field, ...]:
    return tuple(model._meta.concrete_fields)


@cache
def _by_name(model: type[Model]) -> dict[str, Field]:
    return {f.name: f for f in _fields(model)}


@cache
def _columns(model: type[Model]) -> str:
    """The quoted column list of a model, in ``_fields`` order (what ``_from_db`` reads back)."""
    return ", ".join(f'"{f.column}"' for f in _fields(model))


def _from_db(model: type[Model], values: Sequence[Any]) -> Any:
    fields = _fields(model)
    converted = []
    for field, value in zip(fields, values):
        for conv in field.get_db_converters(connection):
            value = conv(value, field, connection)
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


def lock_node(node_run_id: int) -> NodeRun | None:
    """Lock the node run's run row, then read the node run (``.run`` set to the locked row).

    Two statements on purpose: a single ``node JOIN run ... FOR UPDATE OF run``
    would return the node row as of the snapshot taken before waiting for the
    lock (PostgreSQL re-reads only the rows it locks), so a claim or result
    queued behind the lock holder could act on a stale attempt.
    """
    locked = lock_run_with(None, [node_run_id])
    return None if locked is None else locked.nodes.get(node_run_id)


def _lock_node_orm(node_run_id: int) -> NodeRun | None:
    """``lock_node`` through the ORM (SQLite, embedded): three queries, the same order of lock and read."""
    run_id = NodeRun.objects.filter(id=node_run_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return None
    run = Run.objects.select_for_update().filter(id=run_id).first()
    node_run = NodeRun.objects.filter(id=node_run_id).first()
    if run is None or node_run is None:
        return None
    node_run.run = run
    return node_run


def combinable() -> bool:
    """Whether completions may be combined here: PostgreSQL, outside any transaction of the caller."""
    return _pg() and not connection.in_atomic_block


@dataclass
class LockedRun:
    """What completions read under their run's lock, in the round trip that takes it.

    ``siblings``, ``waiting`` and ``parked`` hold as many rows as were asked
    for (fewer: there were no more); a queue missing from ``siblings``, or
    None, means not read (the caller asks the database itself).
    """

    run: Run
    nodes: dict[int, NodeRun]  # node run id -> row (``.run`` set), for the ids asked for
    successors: dict[str, NodeRun]  # node_id -> row
    siblings: dict[str, list[NodeRun]]  # queue -> queued node runs, parked first
    waiting: list[NodeRun] | None  # ready nodes waiting for a parallelism slot, lowest topological index first
    parked: list[NodeRun] | None  # parked nodes (queued, no message), lowest topological index first


@cache
def _lock_run_sql(run_expr: str) -> tuple[str, ...]:
    """The statements of ``lock_run_with``; ``run_expr`` is the SQL (with its parameters) naming the run."""
    n_cols = _columns(NodeRun)
    table = NodeRun._meta.db_table
    run_table = Run._meta.db_table
    of_run = f'SELECT {n_cols} FROM "{table}" WHERE "run_id" = {run_expr}'
    return (
        f'SELECT {_columns(Run)} FROM "{run_table}" WHERE "id" = {run_expr} FOR UPDATE',
        f'{of_run} AND "id" = ANY(%s)',
        f'{of_run} AND "node_id" = ANY(%s)',
        f'{of_run} AND "status" = \'queued\' AND "queue" = %s ORDER BY ("dispatched_at" IS NOT NULL), "topo_index" LIMIT %s',
        (
            f'{of_run} AND "status" = \'pending\' AND "pending_deps" = 0 AND "active_in" > 0 '
            f'AND (SELECT "ready_waiting" FROM "{run_table}" WHERE "id" = {run_expr}) > 0 ORDER BY "topo_index" LIMIT %s'
        ),
        f'{of_run} AND "status" = \'queued\' AND "dispatched_at" IS NULL ORDER BY "topo_index" LIMIT %s',
    )


def lock_run_with(
    run_id: Any,
    node_run_ids: Sequence[int],
    successors: Sequence[str] = (),
    queues: dict[str, int] | None = None,
    waiting: int = 0,
) -> LockedRun | None:
    """Lock a run and read, in the same round trip, what completions of its nodes read under the lock.

    The node runs ``node_run_ids`` (``run_id`` None: the run is the first one's),
    the rows of ``successors``, per queue up to ``queues[queue]`` queued nodes that
    sibling claims would take, and with ``waiting`` > 0 up to that many ready nodes
    waiting for a slot and parked nodes. Each statement runs after the lock is held,
    so it sees every change the previous holder committed (one ``node JOIN run ...
    FOR UPDATE`` would not: PostgreSQL re-reads only the rows it locks). Elsewhere
    than on PostgreSQL: one node, through the ORM, and nothing else read.
    """
    if not _pg():
        assert run_id is None and len(node_run_ids) == 1, "batches are PostgreSQL only (combinable)"
        node_run = _lock_node_orm(node_run_ids[0])
        if node_run is None:
            return None
        return LockedRun(node_run.run, {node_run.pk: node_run}, {}, {}, None, None)
    run_expr, run_params = (
        ("%s", [run_id])
        if run_id is not None
        else (f'(SELECT "run_id" FROM "{NodeRun._meta.db_table}" WHERE "id" = %s)', [node_run_ids[0]])
    )
    lock, nodes_sql, succ_sql, sibling_sql, waiting_sql, parked_sql = _lock_run_sql(run_expr)
    order = list(queues or {})
    parts = [lock, nodes_sql]
    params: list[Any] = [*run_params, *run_params, list(node_run_ids)]
    if successors:
        parts.append(succ_sql)
        params += [*run_params, list(successors)]
    for queue in order:
        parts.append(sibling_sql)
        params += [*run_params, queue, (queues or {})[queue]]
    if waiting > 0:
        parts += [waiting_sql, parked_sql]
        params += [*run_params, *run_params, waiting, *run_params, waiting]
    with connection.cursor() as cur:
        cur.execute(";\n".join(parts), params)
        results = [cur.fetchall()]
        while cur.nextset():
            results.append(cur.fetchall())
    if not results[0]:
        return None
    run = _from_db(Run, results[0][0])
    rows = iter([[_from_db(NodeRun, r) for r in result] for result in results[1:]])
    nodes = {row.pk: row for row in next(rows)}
    for row in nodes.values():
        row.run = run
    succ = {row.node_id: row for row in next(rows)} if successors else {}
    siblings = {queue: next(rows) for queue in order}
    waiting_rows, parked_rows = (next(rows), next(rows)) if waiting > 0 else (None, None)
    return LockedRun(run, nodes, succ, siblings, waiting_rows, parked_rows)


Statement = tuple[str, list[Any]]


def update_rows(model: type[Model], rows: Sequence[Model], field_names: Iterable[str]) -> None:
    """UPDATE each row's given fields to its in-memory values: one statement for all rows."""
    rows = list(rows)
    names = list(field_names)
    if not rows or not names:
        return
    if not _pg():
        if len(rows) == 1:
            rows[0].save(update_fields=names)
        else:
            model._default_manager.bulk_update(rows, names, batch_size=500)
        return
    execute_all(update_statements(model, rows, names))


@cache
def _update_sql(model: type[Model], names: tuple[str, ...]) -> tuple[list[Field], str]:
    """An UPDATE of these fields for rows given as one JSON array (per model and field list).

    One parameter instead of one per field and row: psycopg caches the parse
    of a short query with few parameters, and json.dumps encodes the values.
    """
    by_name = _by_name(model)
    fields = [by_name[name] for name in names]
    pk = model._meta.pk
    assert pk is not None
    pk_cast = pk.db_type(connection) or "bigint"
    if pk_cast == "bigserial":
        pk_cast = "bigint"
    cols = ", ".join(f'"{f.column}" = v."c{i}"' for i, f in enumerate(fields))
    types = f'"pk" {pk_cast}, {_record_types(fields)}'
    sql = f'UPDATE "{model._meta.db_table}" AS t SET {cols} FROM jsonb_to_recordset(%s::jsonb) AS v({types}) WHERE t."{pk.column}" = v."pk"'
    return fields, sql


def _record_types(fields: Sequence[Field]) -> str:
    """The column list of a jsonb_to_recordset record: ``"c0" <type of fields[0]>, ...``."""
    return ", ".join(f'"c{i}" {f.db_type(connection) or "text"}' for i, f in enumerate(fields))


def _json_value(field: Field, value: Any) -> Any:
    """A field's Python value as JSON for jsonb_to_recordset (NULL stays NULL, as the ORM stores it)."""
    if value is None or isinstance(field, JSONField):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def update_statements(model: type[Model], rows: Sequence[Model], names: Sequence[str]) -> list[Statement]:
    """The statements of ``update_rows`` (PostgreSQL), to send together with others."""
    if not rows or not names:
        return []
    fields, sql = _update_sql(model, tuple(names))
    pk = model._meta.pk
    assert pk is not None
    keyed = [(f"c{i}", f, f.attname) for i, f in enumerate(fields)]
    records = []
    for row in rows:
        record = {"pk": _json_value(pk, row.pk)}
        for key, f, attname in keyed:
            record[key] = _json_value(f, getattr(row, attname))
        records.append(record)
    return [(sql, [json.dumps(records, separators=(",", ":"))])]


def execute_all(statements: Sequence[Statement]) -> None:
    """Send several statements in one round trip (client-side binding allows a multi-statement query)."""
    if not statements:
        return
    with connection.cursor() as cur:
        if len(statements) == 1:
            cur.execute(*statements[0])
            return
        sql = ";\n".join(stmt for stmt, _ in statements)
        params = [p for _, ps in statements for p in ps]
        cur.execute(sql, params)


@cache
def _insert_records_sql(model: type[Model], returning: str) -> tuple[str, tuple[Field, ...]]:
    """An INSERT of new rows (serial key left to the database) given as one JSON array, per model."""
    fields = tuple(f for f in _fields(model) if not f.primary_key)
    cols = ", ".join(f'"{f.column}"' for f in fields)
    names = ", ".join(f'v."c{i}"' for i in range(len(fields)))
    sql = f'INSERT INTO "{model._meta.db_table}" ({cols}) SELECT {names} FROM jsonb_to_recordset(%s::jsonb) AS v({_record_types(fields)})'
    return (f"{sql} RETURNING {returning}" if returning else sql), fields


def insert_records(model: type[Model], rows: Sequence[Model], returning: str = "") -> Statement:
    """The INSERT of ``rows`` (auto_now_add applied) with one parameter: a query of a fixed, short
    text whose parse psycopg caches, where a VALUES list of one placeholder per field and row is
    parsed again for every batch."""
    sql, fields = _insert_records_sql(model, returning)
    keyed = [(f"c{i}", f) for i, f in enumerate(fields)]
    records = [{key: _json_value(f, f.pre_save(row, True)) for key, f in keyed} for row in rows]
    return sql, [json.dumps(records, separators=(",", ":"))]


def insert_events(events: Sequence[RunEvent]) -> None:
    if not events:
        return
    if not _pg():
        RunEvent.objects.bulk_create(events)
        return
    execute_all(insert_event_statements(events))


def insert_event_statements(events: Sequence[RunEvent]) -> list[Statement]:
    return [insert_records(RunEvent, events)]


def write_all(
    node_rows: Sequence[NodeRun],
    node_fields: Sequence[str],
    run: Run,
    run_fields: Sequence[str],
    events: Sequence[RunEvent],
    commit: bool = False,
) -> None:
    """A bookkeeping transaction's writes (node runs, the run, its events) in one round trip on PostgreSQL.

    ``commit``: also COMMIT in that round trip when the caller's ``atomic``
    block is the outermost one and ends next (Django's commit is then a no-op:
    psycopg skips COMMIT on an idle connection; on_commit hooks run as usual).
    """
    if not _pg():
        update_rows(NodeRun, node_rows, node_fields)
        update_rows(Run, [run], run_fields)
        insert_events(events)
        return
    statements = update_statements(NodeRun, list(node_rows), node_fields)
    statements += update_statements(Run, [run], run_fields)
    if events:
        statements += insert_event_statements(events)
    if commit and statements and _outermost_atomic():
        statements.append(("COMMIT", []))
    execute_all(statements)


def _outermost_atomic() -> bool:
    """Inside exactly one ``atomic`` block, with no savepoint: its end is the transaction's end."""
    return connection.in_atomic_block and len(connection.atomic_blocks) == 1 and not connection.savepoint_ids


def _insert_row_sql(model: type[Model], row: Model) -> Statement:
    """INSERT of one new row with every concrete field, its key included (auto_now_add applied)."""
    fields = _fields(model)
    params = [f.get_db_prep_save(f.pre_save(row, True), connection) for f in fields]
    cols = ", ".join(f'"{f.column}"' for f in fields)
    return f'INSERT INTO "{model._meta.db_table}" ({cols}) VALUES ({", ".join(["%s"] * len(fields))})', params


def insert_run(run: Run, node_runs: Sequence[NodeRun]) -> None:
    """Insert a new run and its node runs (their ids are set on the objects): one round trip on PostgreSQL."""
    if not _pg() or not node_runs or len(node_runs) > 2000:
        run.save(force_insert=True)
        created = NodeRun.objects.bulk_create(list(node_runs), batch_size=1000)
        for obj, made in zip(node_runs, created):
            obj.pk = made.pk
        return
    run_sql, run_params = _insert_row_sql(Run, run)
    # The node runs as one JSON parameter (a VALUES list of them was a sixth of the API's CPU per start).
    nr_sql, nr_params = insert_records(NodeRun, node_runs, returning='"id", "node_id"')
    with connection.cursor() as cur:
        cur.execute(f"{run_sql};\n{nr_sql}", [*run_params, *nr_params])
        cur.nextset()
        ids = {node_id: pk for pk, node_id in cur.fetchall()}
    if len(ids) != len(node_runs):  # pragma: no cover - one row per node, node ids unique in a run
        raise RuntimeError("node run insert returned the wrong number of ids")
    for obj in node_runs:
        obj.pk = ids[obj.node_id]
        obj._state.adding = False
        obj._state.db = connection.alias
    run._state.adding = False
    run._state.db = connection.alias


def run_id_by_key(workflow_id: Any, idempotency_key: str) -> Any:
    """The id of the workflow's run started with this idempotency key, or None (the start path's check)."""
    if not _pg():
        return Run.objects.filter(workflow_id=workflow_id, idempotency_key=idempotency_key).values_list("id", flat=True).first()
    with connection.cursor() as cur:
        cur.execute(
            f'SELECT "id" FROM "{Run._meta.db_table}" WHERE "workflow_id" = %s AND "idempotency_key" = %s LIMIT 1',
            [workflow_id, idempotency_key],
        )
        row = cur.fetchone()
    return row[0] if row else None


def claim_precheck(node_run_id: int, attempt: int, claimable: Sequence[str]) -> bool:
    """Whether a claim of this attempt may succeed, read without any lock (PostgreSQL; elsewhere: True).

    A message is sent only after the commit that made its attempt claimable,
    so this read is at least as new as that state; and an attempt that stopped
    being claimable (claimed, finished, superseded) never becomes claimable
    again under the same message. A "no" is therefore final and spares the
    run lock; a "yes" is re-checked under it.
    """
    if not _pg():
        return True
    with connection.cursor() as cur:
        cur.execute(
            f'SELECT n."status", n."attempt", r."status" FROM "{NodeRun._meta.db_table}" n '
            f'JOIN "{Run._meta.db_table}" r ON r."id" = n."run_id" WHERE n."id" = %s',
            [node_run_id],
        )
        row = cur.fetchone()
    return row is not None and row[2] == "running" and row[1] == attempt and row[0] in claimable


def queued_sibling(run_id: Any, queue: str | None, exclude: Sequence[int], *, parked_only: bool = False) -> NodeRun | None:
    """A queued node run of this run (on ``queue``; None: any), not among ``exclude``.

    Parked ones (queued without a message: ``dispatched_at`` null) first, then
    by topological index. Called under the run's row lock: what it returns
    cannot be claimed by anyone else meanwhile.
    """
    if not _pg():
        qs = NodeRun.objects.filter(run_id=run_id, status="queued").exclude(id__in=list(exclude))
        if queue is not None:
            qs = qs.filter(queue=queue)
        if parked_only:
            qs = qs.filter(dispatched_at__isnull=True)
        return qs.order_by(F("dispatched_at").asc(nulls_first=True), "topo_index").first()
    where = ['"run_id" = %s', '"status" = %s', 'NOT ("id" = ANY(%s))']
    params: list[Any] = [run_id, "queued", list(exclude)]
    if queue is not None:
        where.append('"queue" = %s')
        params.append(queue)
    if parked_only:
        where.append('"dispatched_at" IS NULL')
    with connection.cursor() as cur:
        cur.execute(
            f'SELECT {_columns(NodeRun)} FROM "{NodeRun._meta.db_table}" WHERE {" AND ".join(where)} '
            f'ORDER BY ("dispatched_at" IS NOT NULL), "topo_index" LIMIT 1',
            params,
        )
        row = cur.fetchone()
    return _from_db(NodeRun, row) if row else None


@cache
def _node_runs_sql() -> str:
    return f'SELECT {_columns(NodeRun)} FROM "{NodeRun._meta.db_table}" WHERE "run_id" = %s AND "node_id" = ANY(%s)'


def node_runs(run_id: Any, node_ids: Sequence[str]) -> list[NodeRun]:
    """Full node-run rows of one run by node id (the successors a completion touches)."""
    if not node_ids:
        return []
    if not _pg():
        return list(NodeRun.objects.filter(run_id=run_id, node_id__in=list(node_ids)))
    with connection.cursor() as cur:
        cur.execute(_node_runs_sql(), [run_id, list(node_ids)])
        return [_from_db(NodeRun, row) for row in cur.fetchall()]


def node_outputs(run_id: Any, node_ids: Sequence[str]) -> list[tuple[str, str, Any]]:
    """(node_id, status, output) of some nodes of one run."""
    if not node_ids:
        return []
    if not _pg():
        return list(NodeRun.objects.filter(run_id=run_id, node_id__in=list(node_ids)).values_list("node_id", "status", "output"))
    output_field = _by_name(NodeRun)["output"]
    with connection.cursor() as cur:
        cur.execute(
            f'SELECT "node_id", "status", "output" FROM "{NodeRun._meta.db_table}" WHERE "run_id" = %s AND "node_id" = ANY(%s)',
            [run_id, list(node_ids)],
        )
        rows = cur.fetchall()
    out = []
    for node_id, status, output in rows:
        for conv in output_field.get_db_converters(connection):
            output = conv(output, output_field, connection)
        out.append((node_id, status, output))
    return out
