"""Services that write runs. PostgreSQL is the truth; Celery only carries messages.

Every change to a run's bookkeeping (node statuses, fan-in counters, slots,
events) happens in a transaction holding that run's row lock
(``SELECT ... FOR UPDATE``). That serialises the run's bookkeeping (never its
handlers, which run outside any transaction) and makes every decision —
dispatch a successor exactly once, accept a result only from the attempt
that holds the claim, finish the run once — a plain read-modify-write.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

import jsonschema
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from executions import fastsql
from executions.engine.graph import Graph
from executions.engine.retry import Policy, backoff_delay, is_retryable
from executions.engine.routing import NodeState, Outcome, resolve
from executions.engine.states import NODE_IN_FLIGHT, NODE_TERMINAL, RUN_TERMINAL, check_node_transition, check_run_transition
from executions.events import RunTx, iso, truncate_for_event
from executions.graphs import graph_for_version
from executions.models import NodeRun, NodeStatus, Run, RunStatus
from workflows.registry import RetryPolicy, node_types
from zyra.errors import Conflict, ErrorDetail, ZyraError

log = logging.getLogger("executions.services")

WORKER_NAME = f"{socket.gethostname()}"


def _worker_id() -> str:
    # host:pid, read per claim: a prefork pool process has its own pid, and the
    # sweeper's worker_lost record then names the exact process that died.
    return f"{WORKER_NAME}:{os.getpid()}"


_CLAIMABLE = (NodeStatus.QUEUED, NodeStatus.DEFERRED, NodeStatus.RETRYING)


# --------------------------------------------------------------------------- helpers


def _cap(run: Run) -> int:
    if run.sequential:
        return 1
    return max(1, run.max_parallel)


def _policy_for(graph: Graph, node_id: str) -> Policy:
    node = graph.nodes[node_id]
    spec_retry = node_types.get(node.type).retry if node_types.has(node.type) else RetryPolicy()
    default = Policy(spec_retry.max_attempts, spec_retry.backoff_s, spec_retry.max_backoff_s, spec_retry.multiplier, spec_retry.jitter)
    return Policy.from_dict(node.retry, default)


def node_timeout_s(graph: Graph, node_id: str) -> float:
    node = graph.nodes[node_id]
    if node.timeout_s is not None:
        return min(node.timeout_s, float(settings.ZYRA_MAX_NODE_TIMEOUT_S))
    if node_types.has(node.type):
        return float(node_types.get(node.type).timeout_s)
    return 30.0


def _lock_run(run_id: Any) -> Run | None:
    return Run.objects.select_for_update().filter(id=run_id).first()


def _lock_node(node_run_id: int) -> NodeRun | None:
    """Lock the node run's run row, then load the node run (with ``.run`` set to the locked row).

    Two statements on purpose. One ``SELECT node JOIN run ... FOR UPDATE OF run``
    returns the node row as of the statement's snapshot, taken *before* it waited
    for the lock: PostgreSQL re-reads only the rows it locks. A duplicate claim or
    a late result queued behind the lock holder (the sweeper re-queueing this
    node, the first copy of a message claiming it) would then see the node as it
    was before, and run it twice or record a stale attempt. The read after the
    lock sees every change the previous holder committed.
    """
    from executions import fastsql

    return fastsql.lock_node(node_run_id)


def _set_node_status(nr: NodeRun, new: str) -> None:
    check_node_transition(nr.status, new)
    nr.status = new


def _set_run_status(run: Run, new: str) -> None:
    check_run_transition(run.status, new)
    run.status = new


def _node_event_data(nr: NodeRun, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"status": nr.status, "attempt": nr.attempt}
    data.update(extra)
    return data


def _json_size(value: Any) -> int:
    return len(json.dumps(value, default=str, ensure_ascii=False).encode("utf-8"))


RUN_FIELDS = [
    "status",
    "event_seq",
    "nodes_done",
    "in_flight",
    "ready_waiting",
    "failed_stop",
    "failed_continue",
    "started_at",
    "finished_at",
    "outputs",
    "error",
    "deadline_at",
    "resumes",
]
NODE_FIELDS = [
    "status",
    "attempt",
    "pending_deps",
    "active_in",
    "dispatched_at",
    "finished_at",
    "started_at",
    "next_attempt_at",
    "lease_until",
    "error",
    "output",
    "attempts",
    "worker_lost",
    "defer_reason",
    "state",
    "deferred_ms",
    "inputs",
    "worker",
]


# --------------------------------------------------------------------------- start


def _validate_inputs(inputs: Any, definition: dict[str, Any]) -> None:
    if not isinstance(inputs, dict):
        raise ZyraError("invalid_inputs", "inputs must be a JSON object.", [ErrorDetail("/inputs", "type", "expected an object")])
    size = _json_size(inputs)
    if size > settings.ZYRA_MAX_INPUT_BYTES:
        raise ZyraError(
            "inputs_too_large",
            f"inputs are {size} bytes; the cap is {settings.ZYRA_MAX_INPUT_BYTES}.",
            [ErrorDetail("/inputs", "too_large", "inputs over the size cap")],
            413,
        )
    schemas: list[dict[str, Any]] = []
    settings_block = definition.get("settings") or {}
    if isinstance(settings_block.get("input_schema"), dict):
        schemas.append(settings_block["input_schema"])
    for node in definition.get("nodes") or []:
        cfg = (node.get("data") or {}).get("config") or {}
        if node.get("type") in {"MANUAL", "WEBHOOK"} and isinstance(cfg.get("input_schema"), dict):
            schemas.append(cfg["input_schema"])
    details: list[ErrorDetail] = []
    for schema in schemas:
        try:
            validator = jsonschema.Draft202012Validator(schema)
            for err in validator.iter_errors(inputs):
                path = "/inputs" + "".join(f"/{p}" for p in err.absolute_path)
                details.append(ErrorDetail(path, f"schema_{err.validator}", err.message[:300]))
        except jsonschema.SchemaError as exc:
            details.append(ErrorDetail("/inputs", "input_schema_invalid", str(exc.message)[:300]))
    if details:
        raise ZyraError("invalid_inputs", "inputs do not match the workflow's input schema.", details[:50])


@dataclass
class StartOptions:
    trigger: str = "manual"
    priority: int = 5
    sequential: bool | None = None


def run_start(
    *,
    workflow: Any,
    inputs: dict[str, Any] | None,
    user: Any,
    trigger: str = "manual",
    idempotency_key: str | None = None,
    priority: int = 5,
    version: Any = None,
) -> Run:
    """Create a run of the workflow's current version with its node runs and dispatch the roots.

    A repeated start with the same idempotency key returns the first run.
    """
    inputs = {} if inputs is None else inputs
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str) or not (1 <= len(idempotency_key) <= 200):
            raise ZyraError(
                "invalid_idempotency_key",
                "idempotency_key must be 1..200 characters.",
                [ErrorDetail("/idempotency_key", "invalid", "1..200 characters")],
            )
        existing_id = fastsql.run_id_by_key(workflow.pk, idempotency_key)
        if existing_id is not None:
            return Run.objects.get(id=existing_id)
    version = version or workflow.current_version
    if version is None:
        raise ZyraError("no_version", "the workflow has no version to run.", [], 409)
    if not workflow.is_active:
        raise ZyraError("workflow_archived", "the workflow is archived.", [], 409)
    definition = version.definition
    _validate_inputs(inputs, definition)
    graph = graph_for_version(version.id, definition)
    wf_settings = graph.settings
    sequential = bool(wf_settings.get("sequential", False)) or not settings.ZYRA_FEATURES["parallel"]
    max_parallel = wf_settings.get("max_parallel_nodes", settings.ZYRA_DEFAULT_MAX_PARALLEL)
    if not isinstance(max_parallel, int) or isinstance(max_parallel, bool) or max_parallel < 1:
        max_parallel = settings.ZYRA_DEFAULT_MAX_PARALLEL
    try:
        with transaction.atomic():
            run = Run(
                workflow=workflow,
                version=version,
                owner_id=workflow.owner_id,  # (not the user row: no read of it)
                status=RunStatus.QUEUED,
                trigger=trigger,
                priority=priority,
                idempotency_key=idempotency_key,
                inputs=inputs,
                nodes_total=len(graph.nodes),
                max_parallel=max_parallel,
                sequential=sequential,
            )
            rows = []
            for node_id in graph.topo:
                node = graph.nodes[node_id]
                spec_queue = node_queue(node.type)
                roots = not graph.in_edges[node_id]
                rows.append(
                    NodeRun(
                        run=run,
                        node_id=node_id,
                        type=node.type,
                        queue=spec_queue,
                        topo_index=graph.topo_index[node_id],
                        pending_deps=len(graph.in_edges[node_id]),
                        active_in=1 if roots else 0,
                    )
                )
            fastsql.insert_run(run, rows)
            # The new row is invisible to everyone else until commit: no lock needed.
            tx = RunTx(run)
            tx.event("run.queued", data={"status": "queued", "trigger": trigger})
            if _may_start(run, wf_limit=workflow.max_concurrent_runs or 0):
                _activate(tx, graph, [nr for nr in rows if nr.pending_deps == 0], rows)
            else:
                log.info("executions.run_waiting", extra={"run_id": str(run.id), "workflow_id": str(workflow.id)})
            tx.flush(RUN_FIELDS)
    except IntegrityError:
        if idempotency_key is None:
            raise
        # A concurrent start with the same key won the race: return its run.
        return Run.objects.get(workflow=workflow, idempotency_key=idempotency_key)
    log.info("executions.run_started", extra={"run_id": str(run.id), "workflow_id": str(workflow.id), "nodes": len(graph.nodes)})
    return run


# --------------------------------------------------------------------------- run concurrency limits


def _run_timeout_s(graph: Graph) -> float:
    timeout_s = graph.settings.get("timeout_s", settings.ZYRA_DEFAULT_RUN_TIMEOUT_S)
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or timeout_s <= 0:
        timeout_s = settings.ZYRA_DEFAULT_RUN_TIMEOUT_S
    return float(timeout_s)


def _limits(run: Run, wf_limit: int | None = None) -> tuple[int, int]:
    """(the workflow's concurrent-run limit, the per-user one); ``wf_limit`` when the caller just read it."""
    if wf_limit is None:
        wf_limit = _workflow_limit(run.workflow_id)
    return int(wf_limit), int(settings.ZYRA_MAX_RUNS_PER_USER)


def _workflow_limit(workflow_id: Any) -> int:
    from workflows.models import Workflow

    return int(Workflow.objects.filter(id=workflow_id).values_list("max_concurrent_runs", flat=True).first() or 0)


def _may_start(run: Run, wf_limit: int | None = None) -> bool:
    """Whether a queued run may start now under its workflow's and its owner's concurrent-run limits.

    Enforced by the database across all processes: the workflow (and owner) rows
    are locked while running runs are counted, so two starts cannot both take
    the last slot. Runs that wait start in creation order. ``wf_limit``: the
    workflow's limit when the caller has just read it (a start), else read here.
    """
    wf_limit, user_limit = _limits(run, wf_limit)
    if not wf_limit and not user_limit:
        return True
    from django.contrib.auth import get_user_model

    from workflows.models import Workflow

    if wf_limit:
        list(Workflow.objects.select_for_update().filter(id=run.workflow_id).values_list("id", flat=True))
    if user_limit:
        list(get_user_model().objects.select_for_update().filter(id=run.owner_id).values_list("id", flat=True))
    if wf_limit:
        scope = Run.objects.filter(workflow_id=run.workflow_id)
        if scope.filter(status=RunStatus.RUNNING).count() >= wf_limit:
            return False
        if scope.filter(status=RunStatus.QUEUED, started_at__isnull=True, created_at__lt=run.created_at).exclude(id=run.id).exists():
            return False
    if user_limit:
        scope = Run.objects.filter(owner_id=run.owner_id)
        if scope.filter(status=RunStatus.RUNNING).count() >= user_limit:
            return False
        if scope.filter(status=RunStatus.QUEUED, started_at__isnull=True, created_at__lt=run.created_at).exclude(id=run.id).exists():
            return False
    return True


def _activate(tx: RunTx, graph: Graph, roots: list[NodeRun], rows: Sequence[NodeRun] = ()) -> None:
    """Start a run: its roots are queued (up to the cap). ``rows``: every node run of the run, when
    the caller has them (a new run): instant nodes (trigger roots, a DELAY's first attempt) then run at once (``_run_instant_nodes``)."""
    run = tx.run
    _set_run_status(run, RunStatus.RUNNING)
    run.started_at = tx.now
    run.deadline_at = tx.now + timedelta(seconds=_run_timeout_s(graph))
    tx.event("run.started", data={"status": "running", "version": run.version.number if run.version_id else None})
    _admit(tx, roots)
    if run.nodes_total == 0:
        _finalize(tx)
    elif rows:
        _run_instant_nodes(tx, graph, rows)


def _run_instant_nodes(tx: RunTx, graph: Graph, rows: Sequence[NodeRun]) -> None:
    """Run the queued instant nodes of a starting run in its starting transaction (ZYRA_INLINE_TRIGGERS).

    Sending a trigger root to a worker cost a message and two locked
    transactions per run; here it is claimed, run and completed in the commit
    that creates the run, so what follows it - the next nodes, or a DELAY's
    wake-up countdown - is queued and sent by that commit (``_run_instant``).
    """
    if not settings.ZYRA_INLINE_TRIGGERS:
        return
    from executions import executor

    tx.prefetched = {nr.node_id: nr for nr in rows}  # every row of the run, as just written
    _run_instant(tx, graph, executor.edge_condition_evaluator(tx.run))


def _run_instant(tx: RunTx, graph: Graph, evaluate: Any) -> None:
    """Run, in this transaction, the instant nodes it made ready (and those they make ready, in turn).

    Instant types (``NodeTypeSpec.instant``: triggers, a DELAY's first attempt,
    CALCULATOR, CONDITION, SWITCH, MERGE) do no I/O, never wait, and their work
    is capped. Each is claimed, run (the same handler and checks as in a worker,
    with its attempt, events and output) and completed here: no message, no
    claim and no completion transaction of its own, and its successors are
    ready in the same commit. All or nothing: a crash before the commit leaves
    the transaction's first node to be redone, as if none of it had run.
    Once ``ZYRA_INSTANT_BUDGET_MS`` have gone on them in this transaction (the
    run's row stays locked meanwhile), the rest go to workers as usual.
    """

    deadline = time.monotonic() + max(0, int(settings.ZYRA_INSTANT_BUDGET_MS)) / 1000.0
    while tx.run.status == RunStatus.RUNNING:
        ready = _take_ready(tx, 1, accept=lambda nr: _is_instant(nr.type))
        if not ready:
            return
        nr = ready[0]
        tx.now = timezone.now()  # the node's true start (not the transaction's first instant)
        result = _run_instant_attempt(tx, graph, _claim_locked(tx, graph, nr))
        _record_result(tx, graph, nr, Completion(nr.id, nr.attempt, result, evaluate))
        if time.monotonic() > deadline:
            return


def _run_instant_attempt(tx: RunTx, graph: Graph, claim: Claim) -> Result:
    """An instant node's attempt on the transaction's rows (its chain's rows read first, in one query),
    its templates all within one render budget (MAX_RENDER_S in all, not per string: it runs with its
    run's row locked, or inside the API call that starts the run). ``tx.now`` is left at its finish."""
    from executions import executor
    from executions.engine import templates

    _prefetch_instant_reach(tx, graph, claim.node_run.node_id)
    claim.known = _Held(tx)
    with templates.time_budget(templates.MAX_RENDER_S):
        result = executor.run_attempt(claim)
    tx.now = timezone.now()
    return result


PREFETCH_REACH_MAX = 200


def _prefetch_instant_reach(tx: RunTx, graph: Graph, node_id: str) -> None:
    """Read, in one query, the rows an instant chain from ``node_id`` will want: the nodes it can
    reach through instant nodes (and the first ones past them), and their predecessors (whose outputs
    are the chain's inputs). Without it, each instant node's routing and inputs would cost a read of
    their own under the run's lock. At most PREFETCH_REACH_MAX rows; the rest are read as needed."""
    if node_id in tx.reached:  # within the reach of an instant node before it in this transaction
        return
    wanted: dict[str, None] = {}
    stack = [node_id]
    tx.reached.add(node_id)
    while stack and len(wanted) < PREFETCH_REACH_MAX:
        nid = stack.pop()
        wanted.update(dict.fromkeys(graph.predecessors(nid)))
        for succ in graph.successor_ids(nid):
            wanted[succ] = None
            if succ not in tx.reached and _is_instant(graph.nodes[succ].type):
                tx.reached.add(succ)
                stack.append(succ)
    if stack:  # stopped at the cap: those left unexplored look again when they run
        tx.reached.difference_update(stack)
    missing = [nid for nid in wanted if nid not in tx.by_node and nid not in tx.prefetched][:PREFETCH_REACH_MAX]
    if missing:  # rows this transaction has not changed: the database has them as they are
        for row in fastsql.node_runs(tx.run.id, missing):
            tx.prefetched[row.node_id] = row


class _Held(Mapping[str, tuple[str, Any]]):
    """node_id -> (status, output) of the rows a transaction holds, looked up when asked: those it
    changed (not in the database yet), else those read with its lock (``Claim.known``)."""

    def __init__(self, tx: RunTx) -> None:
        self._tx = tx

    def __getitem__(self, node_id: str) -> tuple[str, Any]:
        row = self._tx.held(node_id)
        if row is None:
            raise KeyError(node_id)
        return row.status, row.output

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, str) and self._tx.held(node_id) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tx.by_node.keys() | self._tx.prefetched.keys())

    def __len__(self) -> int:
        return len(self._tx.by_node.keys() | self._tx.prefetched.keys())


def node_queue(type_: str) -> str:
    """The queue a type's nodes are sent to (an unknown type: cpu)."""
    return node_types.get(type_).queue if node_types.has(type_) else "cpu"


def _is_instant(type_: str) -> bool:
    return node_types.has(type_) and node_types.get(type_).instant


def runs_start_waiting(*, workflow_id: Any = None, owner_id: Any = None, limit: int = 50) -> int:
    """Start queued runs (oldest first) that the concurrency limits now admit."""
    qs = Run.objects.filter(status=RunStatus.QUEUED, started_at__isnull=True)
    if workflow_id is not None:
        qs = qs.filter(workflow_id=workflow_id)
    if owner_id is not None:
        qs = qs.filter(owner_id=owner_id)
    started = 0
    for run_id in list(qs.order_by("created_at").values_list("id", flat=True)[:limit]):
        with transaction.atomic():
            run = Run.objects.select_for_update(skip_locked=True).filter(id=run_id, status=RunStatus.QUEUED).first()
            if run is None:
                continue
            if not _may_start(run):
                if workflow_id is not None or owner_id is not None:
                    break  # first-come first-served within the scope
                continue
            graph = graph_for_version(run.version_id)
            tx = RunTx(run)
            roots = list(NodeRun.objects.filter(run=run, status=NodeStatus.PENDING, pending_deps=0))
            _activate(tx, graph, roots)
            tx.flush(RUN_FIELDS)
            started += 1
    return started


# --------------------------------------------------------------------------- admission


def _queue(tx: RunTx, nr: NodeRun, countdown: float = 0.0, urgent: bool = False) -> None:
    was_in_flight = nr.status in NODE_IN_FLIGHT
    _set_node_status(nr, NodeStatus.QUEUED)
    nr.attempt += 1
    nr.dispatched_at = tx.now
    nr.next_attempt_at = None
    if not was_in_flight:
        tx.run.in_flight += 1
    tx.touch(nr)
    tx.event("node.queued", nr.node_id, _node_event_data(nr))
    tx.send(nr.id, nr.attempt, nr.queue, countdown, urgent=urgent)


def _admit(tx: RunTx, ready: list[NodeRun]) -> list[NodeRun]:
    """Queue ready nodes up to the run's parallelism cap; the rest wait for a slot."""
    cap = _cap(tx.run)
    changed: list[NodeRun] = []
    for nr in sorted(ready, key=lambda n: n.topo_index):
        if tx.run.in_flight < cap:
            _queue(tx, nr)
            changed.append(nr)
        else:
            tx.run.ready_waiting += 1
    return changed


def _refill(tx: RunTx) -> list[NodeRun]:
    run = tx.run
    free = _cap(run) - run.in_flight
    if run.ready_waiting <= 0 or free <= 0 or run.status != RunStatus.RUNNING:
        return []
    waiting = tx.take_waiting(free)
    if waiting is None:
        tx.save_dirty()  # the query must see the nodes this transaction made ready
        waiting = list(
            NodeRun.objects.filter(run=run, status=NodeStatus.PENDING, pending_deps=0, active_in__gt=0).order_by("topo_index")[:free]
        )
    run.ready_waiting = max(0, run.ready_waiting - len(waiting))
    changed = []
    for nr in waiting:
        _queue(tx, nr)
        changed.append(nr)
    return changed


# --------------------------------------------------------------------------- claim


@dataclass
class Claim:
    node_run: NodeRun
    run: Run
    graph: Graph
    timeout_s: float
    # node_id -> (status, output) of finished nodes as committed with the claim (hand-off: the predecessor).
    known: Mapping[str, tuple[str, Any]] = field(default_factory=dict)
    # Other successors made ready by the same completion, claimed with it for this process's fan-out
    # threads (``Completion.spare``): each starts at once instead of waiting for a message or this thread.
    extra: list[Claim] = field(default_factory=list)


def node_claim(*, node_run_id: int, attempt: int) -> Claim | None:
    """Move a node from queued/deferred/retrying to running for this attempt; None if not ours to run."""
    return node_claim_or_run(node_run_id=node_run_id, attempt=attempt)[1]


def node_claim_or_run(
    *, node_run_id: int, attempt: int, plan: Callable[[Graph, NodeRun], tuple[Sequence[str], int]] | None = None
) -> tuple[bool, Claim | None]:
    """``node_claim``; with ``plan``, an instant node (``NodeTypeSpec.instant``, ZYRA_INSTANT_NODES: a
    DELAY's wake-up, say) is also run and completed in the claiming transaction, like a successor
    made ready by a completion, and the node this thread runs next is claimed with it.

    ``plan(graph, node)``: the (claim queues, spare) of that completion (``node_complete_and_claim``).
    Returns (whether the attempt was ours, the claim this thread runs now: the node itself, or after
    an instant one, the node taken next or None).
    """
    if not fastsql.claim_precheck(node_run_id, attempt, _CLAIMABLE):
        # Already claimed (e.g. taken by a thread that finished a sibling), finished or superseded.
        return False, None
    with transaction.atomic():
        nr = _lock_node(node_run_id)
        if nr is None:
            log.info("executions.claim_missing", extra={"node_run_id": node_run_id})
            return False, None
        run = nr.run
        if run.status != RunStatus.RUNNING:
            return False, None
        if nr.attempt != attempt or nr.status not in _CLAIMABLE:
            return False, None
        now = timezone.now()
        if nr.next_attempt_at is not None and nr.next_attempt_at > now + timedelta(milliseconds=250):
            # An early duplicate of a deferred/retry message: its time has not come.
            return False, None
        graph = graph_for_version(run.version_id)
        tx = RunTx(run)
        claim: Claim | None = _claim_locked(tx, graph, nr)
        tx.touch(nr)
        if plan is None or not settings.ZYRA_INSTANT_NODES or not _is_instant(nr.type):
            tx.flush([], CLAIM_FIELDS, commit=True)
            return True, claim
        from executions import executor

        assert claim is not None
        queues, spare = plan(graph, nr)
        result = _run_instant_attempt(tx, graph, claim)
        claim = _apply_completion(
            tx, graph, nr, Completion(nr.id, nr.attempt, result, executor.edge_condition_evaluator(run), tuple(queues), (), spare)
        )
        tx.flush(RUN_FIELDS, commit=True)
    return True, claim


CLAIM_FIELDS = ["status", "started_at", "lease_until", "worker", "next_attempt_at", "attempts"]


def _claim_locked(tx: RunTx, graph: Graph, nr: NodeRun) -> Claim:
    """The claim itself, on a node whose run row this transaction holds locked (the caller saves the row)."""
    run, now = tx.run, tx.now
    timeout = node_timeout_s(graph, nr.node_id)
    _set_node_status(nr, NodeStatus.RUNNING)
    nr.started_at = nr.started_at or now
    nr.lease_until = now + timedelta(seconds=min(settings.ZYRA_LEASE_S, timeout + settings.ZYRA_LEASE_S))
    nr.worker = _worker_id()
    nr.next_attempt_at = None
    nr.attempts = [
        *nr.attempts,
        {"attempt": nr.attempt, "status": "running", "started_at": iso(now), "worker": nr.worker, "resume": run.resumes},
    ]
    tx.event("node.started", nr.node_id, _node_event_data(nr))
    return Claim(node_run=nr, run=run, graph=graph, timeout_s=timeout)


def _take_ready(
    tx: RunTx, limit: int, queues: Sequence[str | None] = (None,), accept: Callable[[NodeRun], bool] | None = None
) -> list[NodeRun]:
    """Up to ``limit`` nodes this transaction queued without a countdown, taken off its dispatch list
    (no message will be sent for them): of ``queues``, in that order (None: any queue), and with
    ``accept``, only those it accepts."""
    taken: list[NodeRun] = []
    for queue in queues:
        if len(taken) >= limit:
            break
        keep = []
        for item in tx.dispatch:
            nid, _attempt, item_queue, countdown, _prio = item
            nr = tx.rows.get(nid) if len(taken) < limit and countdown <= 0 and queue in (None, item_queue) else None
            if nr is None or nr.status != NodeStatus.QUEUED or nr in taken or (accept is not None and not accept(nr)):
                keep.append(item)
                continue
            nr.run = tx.run
            taken.append(nr)
        tx.dispatch = keep
    return taken


def _claim_next_inline(tx: RunTx, graph: Graph, queues: Sequence[str], spare: int = 0) -> Claim | None:
    """Hand-off fast path: claim, in the completing transaction, one successor that became ready now
    (and up to ``spare`` more for this process's fan-out threads, ``Claim.extra``).

    The successor was just queued by this transaction (its row is among the
    dirty ones); instead of a message it is marked running for this worker,
    with a lease, in the same commit. A crash after the commit leaves a
    running node whose lease expires: the sweeper recovers it like any
    attempt lost with its worker. ``queues``: those this worker serves, the
    finished node's own first (a node of another queue goes only to a worker
    that would take its message anyway).
    """
    if tx.run.status != RunStatus.RUNNING:
        return None
    ready = _take_ready(tx, 1 + spare, queues)
    if ready:
        claims = [_claim_locked(tx, graph, nr) for nr in ready]
        for claim in claims:
            claim.known = _Held(tx)
        claims[0].extra = claims[1:]
        return claims[0]
    if not settings.ZYRA_INLINE_SIBLINGS or tx.run.in_flight <= 0:
        return None  # (nothing in flight: no node of this run is queued, no query needed)
    # No successor became ready: take a sibling that is queued and waiting for a worker (a fan-out's
    # other branches). Its message finds it running and does nothing (node_claim's pre-check).
    sibling = None
    for queue in queues:
        sibling, ask = tx.take_sibling(queue)
        if ask:
            sibling = fastsql.queued_sibling(tx.run.id, queue, list(tx.rows))
        if sibling is not None:
            break
    if sibling is None:
        return None
    sibling.run = tx.run
    if sibling.dispatched_at is None:
        sibling.dispatched_at = tx.now  # a parked one (ZYRA_DISPATCH_AHEAD): taken here instead of by a message
    tx.touch(sibling)
    return _claim_locked(tx, graph, sibling)


def _release_parked(tx: RunTx) -> None:
    """A completion that takes no node itself sends one parked node of the run its message.

    So the threads and messages carrying a fan-out whose messages were held
    back (ZYRA_DISPATCH_AHEAD) never become fewer while parked nodes remain.
    """
    run = tx.run
    if int(settings.ZYRA_DISPATCH_AHEAD) <= 0 or run.status != RunStatus.RUNNING or run.in_flight <= 0:
        return
    parked, ask = tx.take_parked()
    if ask:
        parked = fastsql.queued_sibling(run.id, None, list(tx.rows), parked_only=True)
    if parked is None:
        return
    parked.run = run
    parked.dispatched_at = tx.now
    tx.touch(parked)
    tx.send(parked.id, parked.attempt, parked.queue)
    tx.parkable.discard(parked.id)


# --------------------------------------------------------------------------- completion


@dataclass
class Result:
    kind: str  # success | error | defer | skipped_passthrough
    output: Any = None
    error: dict[str, Any] | None = None
    retry_after_s: float | None = None
    defer_until: Any = None
    defer_reason: str = ""
    state: Any = None
    inputs: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def node_complete(*, node_run_id: int, attempt: int, result: Result, evaluate: Any = None) -> bool:
    """Record the result of the attempt that holds the claim. A late or duplicate result is discarded."""
    return node_complete_and_claim(node_run_id=node_run_id, attempt=attempt, result=result, evaluate=evaluate)[0]


@dataclass(frozen=True)
class Completion:
    """One attempt's result to record (``node_complete_and_claim``'s arguments)."""

    node_run_id: int
    attempt: int
    result: Result
    evaluate: Any = None
    # Queues whose nodes this thread may take next, in order of preference (empty: none).
    claim_queues: tuple[str, ...] = ()
    successors: tuple[str, ...] = ()
    # Fan-out threads this process holds free for this completion: as many other successors that
    # became ready with the one taken are claimed too (``Claim.extra``; ZYRA_FANOUT_THREADS).
    spare: int = 0


def node_complete_and_claim(
    *,
    node_run_id: int,
    attempt: int,
    result: Result,
    evaluate: Any = None,
    claim_queues: Sequence[str] = (),
    successors: Sequence[str] = (),
    run_id: Any = None,
    spare: int = 0,
) -> tuple[bool, Claim | None]:
    """``node_complete``; with ``claim_queues``, also claim one node of those queues for this thread:
    a successor that became ready, else a queued sibling (the first queue that has one, in order);
    with ``spare``, up to that many other successors that became ready (``Claim.extra``).

    Returns (whether the result was recorded, the successor's claim or None).
    One transaction per hand-off instead of two (complete, then claim).

    ``run_id`` (the node's run, known to the executor): completions of the same
    run by several threads of this process are recorded together, in one
    transaction (``executions.combine``; ZYRA_COMBINE_COMPLETIONS, PostgreSQL).
    """
    from executions.gate import FINISH, slots

    item = Completion(node_run_id, attempt, result, evaluate, tuple(claim_queues), tuple(successors), spare)
    if run_id is not None and settings.ZYRA_COMBINE_COMPLETIONS and fastsql.combinable():
        from executions import combine

        # Only the thread that records the batch takes an engine slot; those it records for wait without.
        return combine.submit(
            run_id, item, partial(_complete_batch, run_id), partial(_complete_one, run_id=run_id), guard=partial(slots.hold, FINISH)
        )
    with slots.hold(FINISH):
        return _complete_one(item)


def _complete_one(item: Completion, run_id: Any = None) -> tuple[bool, Claim | None]:
    return _complete_batch(run_id, [item])[0]


def _complete_batch(run_id: Any, items: Sequence[Completion]) -> list[tuple[bool, Claim | None]]:
    """Completions of one run (``run_id`` None: the first item's) in one transaction, each applied as
    if alone, in order. What they read under the lock comes in the round trip that takes it."""
    with transaction.atomic():
        queues: dict[str, int] = {}
        for item in items:
            for queue in item.claim_queues:
                queues[queue] = queues.get(queue, 0) + 1
        successors = sorted({s for item in items for s in item.successors})
        # Each completion frees at most one slot and takes at most one sibling or parked node.
        locked = fastsql.lock_run_with(run_id, [item.node_run_id for item in items], successors, queues, len(items))
        if locked is None:
            return [(False, None)] * len(items)
        run = locked.run
        graph = graph_for_version(run.version_id)
        tx = RunTx(run)
        tx.prefetched = locked.successors
        tx.siblings = {queue: (rows, len(rows) < queues[queue]) for queue, rows in locked.siblings.items()}
        if locked.waiting is not None:
            tx.waiting = (locked.waiting, len(locked.waiting) < len(items))
        if locked.parked is not None:
            tx.parked = (locked.parked, len(locked.parked) < len(items))
        out: list[tuple[bool, Claim | None]] = []
        for item in items:
            nr = tx.rows.get(item.node_run_id) or locked.nodes.get(item.node_run_id)  # as this batch left it
            if nr is None or not _still_ours(nr, run, item):
                out.append((False, None))
                continue
            nr.run = run
            out.append((True, _apply_completion(tx, graph, nr, item)))
        tx.flush(RUN_FIELDS, commit=True)
    return out


def _still_ours(nr: NodeRun, run: Run, item: Completion) -> bool:
    """Whether the attempt still holds its claim and its run is still running (else the result is late)."""
    if nr.status != NodeStatus.RUNNING or nr.attempt != item.attempt:
        log.info(
            "executions.late_result_discarded",
            extra={"run_id": str(run.id), "node_run_id": item.node_run_id, "attempt": item.attempt, "current": nr.attempt},
        )
        return False
    return run.status == RunStatus.RUNNING


def _apply_completion(tx: RunTx, graph: Graph, nr: NodeRun, item: Completion) -> Claim | None:
    """Record one result on the locked run (``tx``), run the instant nodes it made ready
    (ZYRA_INSTANT_NODES); returns the claim of the node taken next, if any."""
    _record_result(tx, graph, nr, item)
    if settings.ZYRA_INSTANT_NODES:
        _run_instant(tx, graph, item.evaluate)
    claim = _claim_next_inline(tx, graph, item.claim_queues, item.spare) if item.claim_queues else None
    if claim is None:
        _release_parked(tx)
    return claim


def _record_result(tx: RunTx, graph: Graph, nr: NodeRun, item: Completion) -> None:
    """Record one attempt's result on the locked run: the node's new state and what it made ready."""
    result, evaluate = item.result, item.evaluate
    now = tx.now
    if result.inputs is not None:
        nr.inputs = result.inputs
    _close_attempt(nr, now, result)
    tx.touch(nr)
    changed: list[NodeRun] = [nr]
    if result.kind == "defer":
        _set_node_status(nr, NodeStatus.DEFERRED)
        nr.next_attempt_at = result.defer_until
        nr.defer_reason = result.defer_reason
        nr.state = result.state
        nr.lease_until = None
        wait = max(0.0, (result.defer_until - now).total_seconds())
        if result.defer_reason != "delay":
            nr.deferred_ms += int(wait * 1000)
        tx.event("node.deferred", nr.node_id, _node_event_data(nr, reason=result.defer_reason, until=iso(result.defer_until)))
        if wait <= settings.ZYRA_MAX_COUNTDOWN_S:
            tx.send(nr.id, nr.attempt, nr.queue, wait)
    elif result.kind in {"success", "skipped_passthrough"}:
        nr.output = result.output
        nr.error = None
        status = NodeStatus.SUCCEEDED if result.kind == "success" else NodeStatus.SKIPPED
        changed += _finish(
            tx,
            graph,
            nr,
            status,
            Outcome(
                status="succeeded" if result.kind == "success" else "skipped",
                output=result.output,
                passthrough=result.kind == "skipped_passthrough",
            ),
            evaluate,
        )
    else:
        changed += _handle_error(tx, graph, nr, result, evaluate)
    tx.touch(*changed)


def _close_attempt(nr: NodeRun, now: Any, result: Result) -> None:
    if nr.attempts:
        last = dict(nr.attempts[-1])
        last["finished_at"] = iso(now)
        last["status"] = {"success": "succeeded", "defer": "deferred", "skipped_passthrough": "skipped"}.get(result.kind, "failed")
        if result.error:
            last["error"] = result.error
        nr.attempts = [*nr.attempts[:-1], last]


def _save_nodes(nodes: list[NodeRun]) -> None:
    unique = {id(n): n for n in nodes}.values()
    if unique:
        NodeRun.objects.bulk_update(list(unique), NODE_FIELDS)


def _attempts_spent(nr: NodeRun, run: Run) -> int:
    """Attempts that count against the node's retry budget (the current one included, already closed).

    Not the attempt number: attempts lost with their worker have their own
    limit (ZYRA_WORKER_LOST_MAX), and a resumed run gives its nodes their
    budget again (only attempts since the last reopening count).
    """
    spent = {
        a.get("attempt")
        for a in nr.attempts
        if a.get("resume", 0) == run.resumes and a.get("status") == "failed" and (a.get("error") or {}).get("code") != "worker_lost"
    }
    return max(1, len(spent))


def _abandon_attempt(nr: NodeRun, now: Any, code: str, message: str) -> None:
    """Close the history entry of an attempt still running when its node is cancelled or reopened."""
    if nr.attempts and nr.attempts[-1].get("status") == "running":
        last = {**nr.attempts[-1], "status": "cancelled", "finished_at": iso(now), "error": {"code": code, "message": message}}
        nr.attempts = [*nr.attempts[:-1], last]


def _handle_error(tx: RunTx, graph: Graph, nr: NodeRun, result: Result, evaluate: Any) -> list[NodeRun]:
    error = dict(result.error or {"code": "internal", "message": "unknown error"})
    code = str(error.get("code", "internal"))
    policy = _policy_for(graph, nr.node_id)
    nr.error = error
    nr.lease_until = None
    tx.touch(nr)
    run = tx.run
    spent = _attempts_spent(nr, run)
    # worker_lost arrives here only once its own budget (ZYRA_WORKER_LOST_MAX) is spent: a node that keeps
    # killing its worker (out of memory, a crashing library) fails instead of being re-queued forever.
    if is_retryable(code) and code != "worker_lost" and spent < policy.max_attempts:
        delay = backoff_delay(policy, spent)
        if result.retry_after_s is not None:
            delay = max(delay, float(result.retry_after_s))
        if run.deadline_at is not None and tx.now + timedelta(seconds=delay) > run.deadline_at:
            delay = max(0.0, (run.deadline_at - tx.now).total_seconds())
        _set_node_status(nr, NodeStatus.RETRYING)
        nr.attempt += 1
        nr.next_attempt_at = tx.now + timedelta(seconds=delay)
        tx.event(
            "node.retrying", nr.node_id, _node_event_data(nr, error=error, delay_s=round(delay, 3), next_attempt_at=iso(nr.next_attempt_at))
        )
        if delay <= settings.ZYRA_MAX_COUNTDOWN_S:
            tx.send(nr.id, nr.attempt, nr.queue, delay)
        return []
    status = NodeStatus.TIMED_OUT if code == "timeout" else NodeStatus.FAILED
    node = graph.nodes[nr.node_id]
    if node.on_error == "error_branch":
        nr.output = {"error": error}
        return _finish(tx, graph, nr, status, Outcome(status="failed", output=nr.output, error_branch=True), evaluate)
    if node.on_error == "continue":
        run.failed_continue += 1
        return _finish(tx, graph, nr, status, Outcome(status="failed"), evaluate)
    # stop: the run fails now; everything not finished is cancelled.
    run_error = {"code": code, "message": str(error.get("message", "")), "node_id": nr.node_id}
    run.failed_stop = True
    run.error = run_error
    changed = _finish(tx, graph, nr, status, Outcome(status="failed"), evaluate, route=False)
    if run.status == RunStatus.RUNNING:  # _finish may have finalised it (it was the last open node)
        _fail_run(tx, run_error)
    return changed


def _finish(tx: RunTx, graph: Graph, nr: NodeRun, status: str, outcome: Outcome, evaluate: Any, route: bool = True) -> list[NodeRun]:
    """A node reached a terminal state: free its slot, resolve its edges, admit what became ready."""
    run = tx.run
    was_in_flight = nr.status in NODE_IN_FLIGHT
    _set_node_status(nr, status)
    nr.finished_at = tx.now
    nr.lease_until = None
    nr.next_attempt_at = None
    tx.touch(nr)
    if was_in_flight:
        run.in_flight = max(0, run.in_flight - 1)
    run.nodes_done += 1
    extra: dict[str, Any] = {"duration_ms": nr.duration_ms}
    if status == NodeStatus.SUCCEEDED or outcome.passthrough:
        extra["output"] = truncate_for_event(nr.output)
    extra["error"] = nr.error
    tx.event(f"node.{status}", nr.node_id, _node_event_data(nr, **extra))
    changed: list[NodeRun] = []
    if route:
        changed += _route(tx, graph, nr.node_id, outcome, evaluate)
    changed += _refill(tx)
    if run.nodes_done >= run.nodes_total and run.status == RunStatus.RUNNING:
        _finalize(tx)
    return changed


def _route(tx: RunTx, graph: Graph, node_id: str, outcome: Outcome, evaluate: Any) -> list[NodeRun]:
    run = tx.run
    rows: dict[str, NodeRun] = {}

    def load(ids: list[str]) -> dict[str, NodeState]:
        # Rows this transaction changed, then rows read with the lock, then the database (which has
        # every change of this transaction that is not in memory: a read saves the dirty rows first).
        fetched = [tx.by_node.get(i) or tx.prefetched[i] for i in ids if i in tx.by_node or i in tx.prefetched]
        have = {row.node_id for row in fetched}
        fetched += fastsql.node_runs(run.id, [i for i in ids if i not in have])
        out: dict[str, NodeState] = {}
        for row in fetched:
            rows[row.node_id] = row
            out[row.node_id] = NodeState(status=row.status, pending_deps=row.pending_deps, active_in=row.active_in)
        return out

    def eval_edge(expr: str, output: Any, source: str) -> bool:
        if evaluate is None:
            return False
        try:
            return bool(evaluate(expr, output, source))
        except Exception as exc:  # noqa: BLE001 - a bad edge condition makes the edge inactive, visibly
            log.warning("executions.edge_condition_error", extra={"run_id": str(run.id), "error": str(exc)[:300]})
            return False

    resolution, states = resolve(graph, node_id, outcome, load, eval_edge)
    changed: list[NodeRun] = []
    for nid, st in states.items():
        if st.changed:
            row = rows[nid]
            row.pending_deps = st.pending_deps
            row.active_in = st.active_in
            changed.append(row)
            tx.touch(row)
    for edge in resolution.edges_taken:
        tx.event("edge.taken", edge.target, {"edge_id": edge.id, "source": edge.source, "target": edge.target})
    for edge in resolution.edges_skipped:
        tx.event("edge.skipped", edge.target, {"edge_id": edge.id, "source": edge.source, "target": edge.target})
    for nid in resolution.skipped:
        row = rows[nid]
        _set_node_status(row, NodeStatus.SKIPPED)
        row.finished_at = tx.now
        run.nodes_done += 1
        tx.event("node.skipped", nid, _node_event_data(row, reason="no_active_incoming_edge"))
    ready = [rows[nid] for nid in resolution.ready]
    changed += _admit(tx, ready)
    return changed


def _finalize(tx: RunTx) -> None:
    run = tx.run
    if run.failed_stop:
        new = RunStatus.FAILED
    elif run.failed_continue > 0:
        new = RunStatus.PARTIALLY_SUCCEEDED
    else:
        new = RunStatus.SUCCEEDED
    graph = graph_for_version(run.version_id)
    sinks = graph.sinks()
    # The sinks this transaction holds are read from memory (changed or read with the lock); the others
    # from the database, after the changed rows are saved (a read must see them).
    held = {nid: tx.held(nid) for nid in sinks}
    outputs = {nid: row.output for nid, row in held.items() if row is not None and row.status == NodeStatus.SUCCEEDED}
    others = [nid for nid, row in held.items() if row is None]
    if others:
        tx.save_dirty()
        outputs.update(NodeRun.objects.filter(run=run, node_id__in=others, status=NodeStatus.SUCCEEDED).values_list("node_id", "output"))
    run.outputs = {nid: outputs[nid] for nid in sinks if nid in outputs}
    _set_run_status(run, new)
    run.finished_at = tx.now
    run.in_flight = 0
    run.ready_waiting = 0
    tx.event(f"run.{new}", data={"status": new, "duration_ms": run.duration_ms, "error": run.error})
    _on_run_finished(run)


_wf_limits: dict[Any, tuple[float, int]] = {}  # workflow id -> (read at, max_concurrent_runs)
WF_LIMIT_TTL_S = 1.0


def _workflow_limit_cached(workflow_id: Any) -> int:
    """A workflow's concurrent-run limit, read at most once a second per process (a finishing run asks,
    to start runs waiting for its slot; a limit set a moment ago is seen within a second, and the
    sweeper starts waiting runs too)."""
    now = time.monotonic()
    hit = _wf_limits.get(workflow_id)
    if hit is not None and now - hit[0] < WF_LIMIT_TTL_S:
        return hit[1]
    limit = _workflow_limit(workflow_id)
    if len(_wf_limits) > 10_000:
        _wf_limits.clear()
    _wf_limits[workflow_id] = (now, limit)
    return limit


def _on_run_finished(run: Run) -> None:
    """After commit: a finished run frees a slot under the concurrency limits."""
    workflow_id, owner_id = run.workflow_id, run.owner_id

    def hook() -> None:
        try:
            wf_limit, user_limit = _limits(run, _workflow_limit_cached(workflow_id))
            if wf_limit:
                runs_start_waiting(workflow_id=workflow_id)
            if user_limit:
                runs_start_waiting(owner_id=owner_id)
        except Exception:  # noqa: BLE001 - the sweeper starts waiting runs too
            log.exception("executions.start_waiting_failed", extra={"workflow_id": str(workflow_id)})

    transaction.on_commit(hook)


def _terminate_open_nodes(tx: RunTx, to_status: str, reason: str) -> None:
    run = tx.run
    tx.save_dirty()
    open_rows = list(NodeRun.objects.filter(run=run).exclude(status__in=list(NODE_TERMINAL)))
    for row in open_rows:
        _set_node_status(row, to_status)
        _abandon_attempt(row, tx.now, reason, "the attempt was abandoned; a result it still returns is discarded")
        row.finished_at = tx.now
        row.lease_until = None
        row.next_attempt_at = None
        run.nodes_done += 1
        tx.event(f"node.{to_status}", row.node_id, _node_event_data(row, reason=reason))
    tx.touch(*open_rows)
    run.in_flight = 0
    run.ready_waiting = 0


def _fail_run(tx: RunTx, error: dict[str, Any]) -> None:
    run = tx.run
    run.failed_stop = True
    run.error = error
    _terminate_open_nodes(tx, NodeStatus.CANCELLED, "run_failed")
    _set_run_status(run, RunStatus.FAILED)
    run.finished_at = tx.now
    tx.event("run.failed", data={"status": "failed", "error": error, "duration_ms": run.duration_ms})
    _on_run_finished(run)


# --------------------------------------------------------------------------- operator actions


def run_cancel(*, run: Run) -> Run:
    with transaction.atomic():
        locked = _lock_run(run.id)
        assert locked is not None
        if locked.status in RUN_TERMINAL:
            raise Conflict("run_finished", f"the run is already {locked.status}.")
        tx = RunTx(locked)
        _terminate_open_nodes(tx, NodeStatus.CANCELLED, "run_cancelled")
        _set_run_status(locked, RunStatus.CANCELLED)
        locked.finished_at = tx.now
        tx.event("run.cancelled", data={"status": "cancelled", "duration_ms": locked.duration_ms})
        _on_run_finished(locked)
        tx.flush(RUN_FIELDS)
    return locked


def _reopen(*, run: Run, mode: str) -> Run:
    """Resume (every unfinished node runs again) or retry-from-failed (failed nodes and what they blocked).

    Succeeded nodes keep their outputs. The fan-in counters are rebuilt by
    replaying the succeeded nodes' routing in topological order.
    """
    with transaction.atomic():
        locked = _lock_run(run.id)
        assert locked is not None
        if locked.status == RunStatus.SUCCEEDED:
            raise Conflict("run_succeeded", "the run succeeded; there is nothing to resume.")
        if locked.status == RunStatus.QUEUED:
            raise Conflict("run_waiting", "the run has not started yet (it waits for a concurrency slot).")
        if locked.status == RunStatus.RUNNING and mode == "retry":
            raise Conflict("run_active", "the run is still running.")
        rows = {r.node_id: r for r in NodeRun.objects.filter(run=locked)}
        if mode == "retry" and not any(r.status in {NodeStatus.FAILED, NodeStatus.TIMED_OUT} for r in rows.values()):
            raise Conflict("no_failed_nodes", "the run has no failed node to retry.")
        graph = graph_for_version(locked.version_id)
        tx = RunTx(locked)
        if locked.status in RUN_TERMINAL:
            _set_run_status(locked, RunStatus.RUNNING)
        locked.finished_at = None
        locked.error = None
        locked.outputs = None
        locked.failed_stop = False
        locked.failed_continue = 0
        locked.resumes += 1
        locked.deadline_at = tx.now + timedelta(seconds=_run_timeout_s(graph))
        keep = {nid for nid, r in rows.items() if r.status == NodeStatus.SUCCEEDED}
        if mode == "resume":
            # Nodes still in flight (an interrupted run) are re-queued with a new attempt.
            pass
        states: dict[str, NodeState] = {}
        for nid in graph.topo:
            if nid in keep:
                states[nid] = NodeState(status="succeeded", pending_deps=0, active_in=0)
            else:
                states[nid] = NodeState(status="pending", pending_deps=len(graph.in_edges[nid]), active_in=0 if graph.in_edges[nid] else 1)
        skipped: set[str] = set()
        # Kept nodes' edge conditions are evaluated again (without the evaluator they would all be inactive).
        raw_evaluate = _edge_evaluator(locked)

        def evaluate(expression: str, output: Any, source: str) -> bool:
            try:
                return bool(raw_evaluate(expression, output, source))
            except Exception:  # noqa: BLE001 - as in routing: a bad condition makes its edge inactive
                return False

        for nid in graph.topo:
            if nid in keep:
                res, _ = resolve(
                    graph, nid, Outcome(status="succeeded", output=rows[nid].output), lambda ids: {i: states[i] for i in ids}, evaluate
                )
                skipped.update(res.skipped)
        tx.event("run.resumed", data={"status": "running", "mode": mode, "resumes": locked.resumes, "kept": sorted(keep)})
        locked.nodes_done = len(keep)
        locked.in_flight = 0
        locked.ready_waiting = 0
        ready: list[NodeRun] = []
        changed: list[NodeRun] = []
        for nid in graph.topo:
            if nid in keep:
                continue
            row = rows[nid]
            st = states[nid]
            # An interrupted run's attempt still in flight: it gets a new attempt number, its result is discarded.
            _abandon_attempt(row, tx.now, "resumed", "the run was resumed while this attempt was in flight")
            row.status = NodeStatus.PENDING  # reopening is the one place a terminal node goes back
            row.pending_deps = st.pending_deps
            row.active_in = st.active_in
            row.finished_at = None
            row.lease_until = None
            row.next_attempt_at = None
            row.worker_lost = 0
            row.state = None
            row.output = None
            changed.append(row)
            if nid in skipped:
                row.status = NodeStatus.SKIPPED
                row.finished_at = tx.now
                locked.nodes_done += 1
                tx.event("node.skipped", nid, _node_event_data(row, reason="no_active_incoming_edge"))
            elif st.pending_deps == 0 and st.active_in > 0:
                ready.append(row)
        changed += _admit(tx, ready)
        if locked.nodes_done >= locked.nodes_total:
            _finalize(tx)
        tx.touch(*changed)
        tx.flush(RUN_FIELDS)
    return locked


def run_resume(*, run: Run) -> Run:
    return _reopen(run=run, mode="resume")


def run_retry(*, run: Run) -> Run:
    return _reopen(run=run, mode="retry")


# --------------------------------------------------------------------------- leases and the sweeper


def node_leases_renew(*, leases: list[tuple[int, int]]) -> int:
    """Extend the leases of these (node run, attempt) pairs, if that attempt still holds its node."""
    if not leases:
        return 0
    until = timezone.now() + timedelta(seconds=settings.ZYRA_LEASE_S)
    held = Q()
    for node_run_id, attempt in leases:
        held |= Q(id=node_run_id, attempt=attempt)
    return NodeRun.objects.filter(held, status=NodeStatus.RUNNING).update(lease_until=until)


@dataclass
class SweepReport:
    lost: int = 0
    resent: int = 0
    woken: int = 0
    timed_out_runs: int = 0
    started: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "lost": self.lost,
            "resent": self.resent,
            "woken": self.woken,
            "timed_out_runs": self.timed_out_runs,
            "started": self.started,
        }


def sweep(*, limit: int = 500) -> SweepReport:
    """Recover what Celery lost. Safe to run in several places at once (SKIP LOCKED on the run row)."""
    report = SweepReport()
    now = timezone.now()
    requeue_after = timedelta(seconds=settings.ZYRA_REQUEUE_AFTER_S)
    wake_grace = timedelta(seconds=settings.ZYRA_WAKE_GRACE_S)
    candidates = (
        NodeRun.objects.filter(
            Q(status=NodeStatus.RUNNING, lease_until__lt=now)
            | Q(status=NodeStatus.QUEUED, dispatched_at__lt=now - requeue_after)
            | Q(status=NodeStatus.QUEUED, dispatched_at__isnull=True)  # parked: checked for carriers below
            | Q(status__in=[NodeStatus.DEFERRED, NodeStatus.RETRYING], next_attempt_at__lt=now - wake_grace)
        )
        .filter(run__status=RunStatus.RUNNING)
        # No ORDER BY: with the models' orderings, DISTINCT took run.created_at and topo_index
        # too, one row per node (a third of a second at 1,000 runs in flight).
        .order_by()
        .values_list("run_id", flat=True)
        .distinct()[:limit]
    )
    run_ids = list(dict.fromkeys(candidates))
    expired_runs = list(Run.objects.filter(status=RunStatus.RUNNING, deadline_at__lt=now).values_list("id", flat=True)[:limit])
    for run_id in expired_runs:
        with transaction.atomic():
            run = Run.objects.select_for_update(skip_locked=True).filter(id=run_id, status=RunStatus.RUNNING).first()
            if run is None:
                continue
            tx = RunTx(run)
            _terminate_open_nodes(tx, NodeStatus.CANCELLED, "run_timed_out")
            _set_run_status(run, RunStatus.TIMED_OUT)
            run.error = {"code": "timeout", "message": "the run passed its deadline"}
            run.finished_at = tx.now
            tx.event("run.timed_out", data={"status": "timed_out", "error": run.error, "duration_ms": run.duration_ms})
            _on_run_finished(run)
            tx.flush(RUN_FIELDS)
            report.timed_out_runs += 1
    for run_id in run_ids:
        _sweep_run(run_id, report)
    # Safety net: queued runs whose start hook was lost (a crash between commit and hook).
    stale = now - timedelta(seconds=settings.ZYRA_REQUEUE_AFTER_S)
    if Run.objects.filter(status=RunStatus.QUEUED, started_at__isnull=True, created_at__lt=stale).exists():
        report.started = runs_start_waiting()
    if report.lost or report.resent or report.woken or report.timed_out_runs:
        log.info("executions.sweep", extra=report.as_dict())
    return report


def _sweep_run(run_id: Any, report: SweepReport) -> None:
    with transaction.atomic():
        run = Run.objects.select_for_update(skip_locked=True).filter(id=run_id, status=RunStatus.RUNNING).first()
        if run is None:
            return
        tx = RunTx(run)
        now = tx.now
        graph = graph_for_version(run.version_id)
        rows = list(
            NodeRun.objects.filter(run=run, status__in=[NodeStatus.RUNNING, NodeStatus.QUEUED, NodeStatus.DEFERRED, NodeStatus.RETRYING])
        )
        changed: list[NodeRun] = []
        for nr in rows:
            if run.status != RunStatus.RUNNING:
                break
            if nr.status == NodeStatus.RUNNING and nr.lease_until is not None and nr.lease_until < now:
                timeout = node_timeout_s(graph, nr.node_id)
                # A live handler's heartbeat renews its lease until timeout + LEASE_S after it started; a dead
                # worker's lease stops before that. Judge by the lease, not by how late this sweep comes (a
                # sweeper that was itself down must not turn a lost worker into a spent timeout retry).
                started = _started(nr)
                overran = started is not None and (nr.lease_until - started).total_seconds() > timeout + settings.ZYRA_LEASE_S
                code = "timeout" if overran else "worker_lost"
                message = "the node passed its timeout" if overran else "the worker running this attempt stopped renewing its lease"
                if code == "worker_lost":
                    nr.worker_lost += 1
                result = Result(kind="error", error={"code": code, "message": message})
                _close_attempt(nr, now, result)
                report.lost += 1
                if code == "worker_lost" and nr.worker_lost <= settings.ZYRA_WORKER_LOST_MAX:
                    # A lost worker does not spend the node's retry budget; it has its own.
                    nr.error = result.error
                    nr.lease_until = None
                    # "sweeper": which process re-queued it (operators, and tests that run several sweepers).
                    tx.event(
                        "node.retrying",
                        nr.node_id,
                        _node_event_data(nr, error=result.error, delay_s=0, lost_worker=nr.worker, sweeper=_worker_id()),
                    )
                    # Ahead of the backlog: the node already waited a lease for its worker to come back.
                    _queue(tx, nr, urgent=True)
                    changed.append(nr)
                else:
                    changed.append(nr)
                    changed += _handle_error(tx, graph, nr, result, _edge_evaluator(run))
            elif (
                nr.status == NodeStatus.QUEUED
                and nr.dispatched_at is not None
                and nr.dispatched_at < now - timedelta(seconds=settings.ZYRA_REQUEUE_AFTER_S)
            ):
                nr.dispatched_at = now
                tx.send(nr.id, nr.attempt, nr.queue, urgent=True)
                changed.append(nr)
                report.resent += 1
            elif (
                nr.status in {NodeStatus.DEFERRED, NodeStatus.RETRYING}
                and nr.next_attempt_at is not None
                and nr.next_attempt_at < now - timedelta(seconds=settings.ZYRA_WAKE_GRACE_S)
            ):
                # Its countdown message was lost or it waits longer than a countdown may: send it now.
                _set_node_status(nr, NodeStatus.QUEUED)
                nr.next_attempt_at = None
                nr.dispatched_at = now
                tx.send(nr.id, nr.attempt, nr.queue, urgent=True)
                changed.append(nr)
                report.woken += 1
        _release_stranded(tx, rows, report)
        tx.touch(*changed)
        tx.flush(RUN_FIELDS)


def _release_stranded(tx: RunTx, rows: list[NodeRun], report: SweepReport) -> None:
    """Backstop for parked nodes (ZYRA_DISPATCH_AHEAD): none may wait with nothing left to carry them.

    Carriers are nodes running (their thread takes or releases one when it
    finishes), queued with a message, or waiting for a countdown message. With
    parked nodes and none of those, the parked ones get messages (as many as
    a transaction would have sent).
    """
    if tx.run.status != RunStatus.RUNNING:
        return
    parked = [nr for nr in rows if nr.status == NodeStatus.QUEUED and nr.dispatched_at is None]
    if not parked:
        return
    carriers = [
        nr
        for nr in rows
        if nr.status in {NodeStatus.RUNNING, NodeStatus.DEFERRED, NodeStatus.RETRYING}
        or (nr.status == NodeStatus.QUEUED and nr.dispatched_at is not None)
    ]
    if carriers:
        return
    for nr in sorted(parked, key=lambda n: n.topo_index)[: max(1, int(settings.ZYRA_DISPATCH_AHEAD))]:
        nr.dispatched_at = tx.now
        tx.touch(nr)
        tx.send(nr.id, nr.attempt, nr.queue, urgent=True)
        report.resent += 1


def _started(nr: NodeRun) -> Any:
    from django.utils.dateparse import parse_datetime

    if not nr.attempts:
        return None
    raw = nr.attempts[-1].get("started_at")
    return parse_datetime(raw) if raw else None


def _edge_evaluator(run: Run) -> Any:
    from executions.executor import edge_condition_evaluator

    return edge_condition_evaluator(run)
