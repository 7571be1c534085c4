"""Running one node attempt: claim, build the context, call the handler, record the result.

The handler runs outside any transaction; only the claim and the completion
touch the run's bookkeeping (``executions.services``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar, get_args

import jsonschema
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from executions import fastsql, services
from executions.engine import templates
from executions.engine.graph import Graph
from executions.engine.routing import Outcome, edge_active
from executions.gate import DISPATCHED, slots
from executions.models import NodeStatus, Run
from executions.nodes.base import Defer, NodeContext, NodeError, handlers
from workflows.registry import QueueName, node_types
from zyra.redaction import Redactor, global_redactor

NODE_QUEUES = frozenset(get_args(QueueName))

log = logging.getLogger("executions.executor")

MAX_STORED_INPUT_BYTES = 64 * 1024
T = TypeVar("T")


# --------------------------------------------------------------------------- lease heartbeat


class Heartbeat:
    """One thread per process renews the leases of every attempt running here.

    Keyed by (node run, attempt): a worker that comes back after its attempt
    was given away (a frozen process, a network partition) must not keep
    alive the lease of the attempt that replaced it on another worker.
    """

    def __init__(self) -> None:
        self._running: dict[tuple[int, int], float] = {}  # (node_run_id, attempt) -> monotonic deadline (timeout + grace)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def track(self, node_run_id: int, timeout_s: float, attempt: int) -> None:
        with self._lock:
            self._running[(node_run_id, attempt)] = time.monotonic() + timeout_s + settings.ZYRA_LEASE_S
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="zyra-heartbeat", daemon=True)
                self._thread.start()

    def untrack(self, node_run_id: int, attempt: int) -> None:
        with self._lock:
            self._running.pop((node_run_id, attempt), None)

    def _loop(self) -> None:
        interval = max(0.5, settings.ZYRA_LEASE_S / 3)
        while True:
            time.sleep(interval)
            now = time.monotonic()
            with self._lock:
                # A handler stuck past its timeout stops being renewed, so the sweeper times it out.
                leases = [key for key, deadline in self._running.items() if deadline > now]
            if not leases:
                continue
            try:
                services.node_leases_renew(leases=leases)
            except Exception:  # noqa: BLE001 - the database may be restarting; retry next beat
                log.warning("executions.heartbeat_failed", exc_info=True)
                close_old_connections()


heartbeat = Heartbeat()


# --------------------------------------------------------------------------- context


def _template_context(run: Run, outputs: dict[str, Any], redactor: Redactor, attempt: int) -> dict[str, Any]:
    def resolve_secret(name: str) -> str:
        try:
            from secrets_vault.resolver import resolve_secret as vault_resolve
        except ImportError as exc:  # pragma: no cover - the vault app is part of the project
            raise KeyError(name) from exc
        return _db_retry("secret", partial(vault_resolve, owner_id=run.owner_id, name=name, redactor=redactor))

    return {
        "input": run.inputs,
        "nodes": {nid: {"output": out} for nid, out in outputs.items()},
        "secrets": templates.SecretsView(resolve_secret),
        "run": {"id": str(run.id), "workflow_id": str(run.workflow_id), "attempt": attempt},
    }


def edge_condition_evaluator(run: Run) -> Any:
    def evaluate(expression: str, output: Any, source: str) -> bool:
        # The source's output is `output`, and also `nodes.<source>.output` as in node templates.
        context = {"output": output, "input": run.inputs, "nodes": {source: {"output": output}}, "run": {"id": str(run.id)}}
        return bool(templates.evaluate(expression, context))

    return evaluate


def _upstream(
    graph: Graph, run: Run, node_id: str, refs: frozenset[str], known: Mapping[str, tuple[str, Any]] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(active predecessors' outputs, outputs of every node the templates name).

    ``known``: nodes' (status, output) as the claiming transaction left them (a
    chain's hand-off: the predecessor; an instant node: every row that
    transaction holds); only the others are read.
    """
    preds = graph.predecessors(node_id)
    wanted = set(preds) | refs
    known = known or {}
    rows: list[tuple[str, str, Any]] = [(nid, *known[nid]) for nid in wanted if nid in known]
    missing = [nid for nid in wanted if nid not in known]
    if missing:
        # A database restart here must not fail the node as a handler crash: ride it out like the claim.
        rows += _db_retry("upstream", partial(fastsql.node_outputs, run.id, missing))
    status: dict[str, str] = {}
    outputs: dict[str, Any] = {}
    st: str | None
    for nid, st, out in rows:
        status[nid] = st
        if st in {NodeStatus.SUCCEEDED, NodeStatus.SKIPPED, NodeStatus.FAILED, NodeStatus.TIMED_OUT}:
            outputs[nid] = out
    evaluate = edge_condition_evaluator(run)
    active: dict[str, Any] = {}
    for edge in graph.in_edges[node_id]:
        st = status.get(edge.source)
        if st is None:
            continue
        outcome = Outcome(
            status="succeeded" if st == NodeStatus.SUCCEEDED else st,
            output=outputs.get(edge.source),
            passthrough=st == NodeStatus.SKIPPED and outputs.get(edge.source) is not None,
            error_branch=st in {NodeStatus.FAILED, NodeStatus.TIMED_OUT} and graph.nodes[edge.source].on_error == "error_branch",
        )
        if edge_active(graph, edge, outcome, evaluate):
            active[edge.source] = outputs.get(edge.source)
    return active, {k: v for k, v in outputs.items() if k in refs or k in active}


_validators: dict[int, tuple[dict[str, Any], Any]] = {}


def _validator(schema: dict[str, Any]) -> Any:
    """A compiled validator per schema object (type specs and cached graphs keep theirs alive)."""
    hit = _validators.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    validator = jsonschema.Draft202012Validator(schema)
    if len(_validators) > 4096:
        _validators.clear()
    _validators[id(schema)] = (schema, validator)
    return validator


def _check_output(graph: Graph, node_id: str, node_type: str, output: Any) -> Any:
    try:
        text = json.dumps(output, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NodeError("output_schema", f"the output is not JSON: {exc}") from None
    size = len(text.encode("utf-8"))
    if size > settings.ZYRA_MAX_OUTPUT_BYTES:
        raise NodeError("output_too_large", f"the output is {size} bytes; the cap is {settings.ZYRA_MAX_OUTPUT_BYTES}")
    # What is stored is JSON: successors (handed the output in memory) see exactly what a reader of the row sees.
    output = json.loads(text)
    schemas = []
    if node_types.has(node_type) and node_types.get(node_type).output_schema:
        schemas.append(("type", node_types.get(node_type).output_schema))
    node_schema = graph.nodes[node_id].output_schema
    if node_schema:
        schemas.append(("node", node_schema))
    for origin, schema in schemas:
        try:
            err = jsonschema.exceptions.best_match(_validator(schema).iter_errors(output))
        except jsonschema.SchemaError as exc:
            raise NodeError("config", f"the {origin} output_schema is invalid: {exc.message}") from None
        if err is not None:
            path = "/" + "/".join(str(p) for p in err.absolute_path)
            raise NodeError(
                "output_schema", f"output does not match the {origin} output schema at {path}: {err.message[:300]}", details={"path": path}
            )
    return output


def _store_inputs(config: Any, data: Any, redactor: Redactor) -> Any:
    stored = {"config": config, "input": data}
    text = json.dumps(stored, default=str)
    if len(text) > MAX_STORED_INPUT_BYTES:
        stored = {
            "config": config if len(json.dumps(config, default=str)) < MAX_STORED_INPUT_BYTES // 2 else {"truncated": True},
            "input": {"truncated": True, "size": len(text)},
        }
    return redactor.redact(stored)


# --------------------------------------------------------------------------- the attempt


def node_execute(*, node_run_id: int, attempt: int, inline_budget: int | None = None, slot: int = DISPATCHED) -> bool:
    """Run one attempt, then (hand-off fast path) up to ``inline_budget`` successors in this thread.

    Each successor is claimed in the transaction that records its
    predecessor's result (``services.node_complete_and_claim``): one
    transaction per hand-off. Returns whether the first call held the claim.
    """
    budget = settings.ZYRA_INLINE_HANDOFFS if inline_budget is None else inline_budget
    plan = _InstantPlan(budget)
    try:
        held, claim = _db_retry("claim", partial(_claim, slot, node_run_id=node_run_id, attempt=attempt, plan=plan))
    except BaseException:
        fanout.release(plan.spare)
        raise
    extra = claim.extra if plan.ran and claim is not None else []
    fanout.release(plan.spare - len(extra))  # threads reserved for an instant node's fan-out and not used
    if not held:
        return False
    if plan.ran:  # an instant node, run and completed in its claim: ``claim`` is what it handed this thread
        budget -= 1
        for other in extra:
            fanout.start(other, budget)
    run_chain(claim, budget)
    return True


def _claim(slot: int, **kwargs: Any) -> tuple[bool, services.Claim | None]:
    """A claim (with an instant node's run and completion) in an engine slot; retries wait outside it."""
    with slots.hold(slot):
        return services.node_claim_or_run(**kwargs)


class _InstantPlan:
    """What the completion of an instant node run in its claim may take (``services.node_claim_or_run``):
    with an inline budget, a node of this worker's queues for this thread, and for a fan-out, as many
    successors as this process has fan-out threads free (reserved once, even if the claim is retried)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.spare = 0
        self.ran = False

    def __call__(self, graph: Graph, nr: Any) -> tuple[tuple[str, ...], int]:
        self.ran = True
        if self.budget <= 0:
            return (), 0
        if not self.spare:
            self.spare = _reserve_branches(graph.successor_ids(nr.node_id), self.budget)
        return claim_queues(nr.queue, graph), self.spare


def run_chain(claim: services.Claim | None, budget: int) -> None:
    """Run a claimed attempt and the successors handed to this thread after it (``budget`` of them).

    A completion that makes several successors ready claims, with the one this
    thread takes, as many others as this process has fan-out threads free
    (``fanout``): each starts at once on its own thread.
    """
    while claim is not None:
        nr = claim.node_run
        node_run_id, attempt = nr.id, nr.attempt
        heartbeat.track(node_run_id, claim.timeout_s, attempt)
        spare, extra = 0, []
        try:
            result = run_attempt(claim)
            evaluate = edge_condition_evaluator(claim.run)
            successors = claim.graph.successor_ids(nr.node_id)
            spare = _reserve_branches(successors, budget)
            # The lease stays renewed until the result is recorded (or given up on).
            _, claim = _db_retry(
                "complete",
                partial(
                    services.node_complete_and_claim,
                    node_run_id=node_run_id,
                    attempt=attempt,
                    result=result,
                    evaluate=evaluate,
                    claim_queues=claim_queues(nr.queue, claim.graph) if budget > 0 else (),
                    successors=successors,
                    run_id=claim.run.id,
                    spare=spare,
                ),
            )
            extra = claim.extra if claim is not None else []
        finally:
            heartbeat.untrack(node_run_id, attempt)
            fanout.release(spare - len(extra))
        budget -= 1
        for other in extra:
            fanout.start(other, budget)


def _reserve_branches(successors: list[str], budget: int) -> int:
    """Fan-out threads held for a completion's other ready branches (with a budget for more than one
    node: this thread takes one, the threads the others)."""
    return fanout.reserve(len(successors) - 1) if budget > 1 and len(successors) > 1 else 0


class FanoutThreads:
    """Threads of this process that run the other branches of a fan-out this process claimed.

    ``reserve`` before a completion holds threads free, so every branch
    claimed with it starts at once (its ``started_at`` is not a time spent
    waiting for a thread); ``release`` gives back what was not used. Only in
    worker pools that run tasks on threads (a prefork child runs one node at a
    time in its main thread: a CPU-bound fan-out stays spread over processes
    by messages). ZYRA_FANOUT_THREADS per process; 0 = off.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._free = 0
        self._executor: ThreadPoolExecutor | None = None

    def reserve(self, wanted: int) -> int:
        size = int(settings.ZYRA_FANOUT_THREADS)
        if size <= 0 or wanted <= 0 or threading.current_thread() is threading.main_thread():
            return 0
        with self._lock:
            if self._pid != os.getpid():  # first use in this process (or a forked child)
                self._pid, self._free = os.getpid(), size
                # As many threads as slots (each may keep a database connection): a slot is released as
                # its thread's last step, so a branch handed a just-released slot waits only for that
                # thread's return to the pool, not for a node.
                self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="zyra-fanout")
            taken = min(wanted, self._free)
            self._free -= taken
            return taken

    def release(self, count: int) -> None:
        if count > 0:
            with self._lock:
                self._free += count

    def start(self, claim: services.Claim, budget: int) -> None:
        assert self._executor is not None
        self._executor.submit(self._run, claim, budget)

    def _run(self, claim: services.Claim, budget: int) -> None:
        try:
            run_chain(claim, budget)
        except Exception:  # noqa: BLE001 - its lease expires and the sweeper gives the node a new attempt
            log.exception("executions.fanout_failed", extra={"node_run_id": claim.node_run.id})
        finally:
            close_old_connections()
            self.release(1)


fanout = FanoutThreads()


def claim_queues(own: str, graph: Graph | None = None) -> tuple[str, ...]:
    """Queues a thread that finished a node of ``own`` may take its next node from, in order.

    The node's own queue first; then (ZYRA_INLINE_ANY_QUEUE) the other node
    queues this worker consumes: a node it would run on delivery of its
    message anyway, run now, instead of a message that waits behind the
    queue's backlog while this thread looks for work. With ``graph``, only
    queues its node types use (each costs a read under the run's lock).
    """
    if not settings.ZYRA_INLINE_ANY_QUEUE:
        return (own,)
    from zyra.celery import app

    others = [q for q in app.amqp.queues.consume_from if q != own and q in NODE_QUEUES]
    if others and graph is not None:
        used = {services.node_queue(t) for t in graph.types()}
        others = [q for q in others if q in used]
    return (own, *others)


def _db_retry(op: str, call: Callable[[], T]) -> T:
    """Ride out a database restart (or a refused connection) around one bookkeeping call.

    Both calls are idempotent by attempt number: a claim or a result that did
    commit before the connection broke is simply not ours any more on retry.
    Giving up after the budget leaves the node to the sweeper.
    """
    deadline = time.monotonic() + max(5.0, 2.0 * settings.ZYRA_LEASE_S)
    delay = 0.1
    while True:
        try:
            return call()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("executions.db_retry", extra={"op": op, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
            close_old_connections()  # drops the broken connection; the next call reconnects
            time.sleep(delay)
            delay = min(2.0, delay * 2)


def run_attempt(claim: services.Claim) -> services.Result:
    """Run a claimed attempt's handler and checks (the worker loop; a trigger root where its run starts)."""
    nr, run, graph = claim.node_run, claim.run, claim.graph
    node = graph.nodes[nr.node_id]
    redactor = Redactor()
    started = time.monotonic()
    try:
        refs = graph.template_refs(nr.node_id)
        active, outputs = _upstream(graph, run, nr.node_id, refs, claim.known)
        data_in: Any = next(iter(active.values())) if len(active) == 1 else (active or run.inputs)
        if not node.enabled:
            return services.Result(kind="skipped_passthrough", output=data_in, inputs=_store_inputs({}, data_in, redactor))
        context = _template_context(run, outputs, redactor, nr.attempt)
        try:
            config = templates.render(node.config, context, "/data/config")
        except templates.TemplateError as exc:
            raise NodeError("template", f"template {exc.template!r} at {exc.path}: {exc.message}", details={"path": exc.path}) from None
        except KeyError as exc:
            raise NodeError("config", f"secret {exc.args[0]!r} does not exist for the workflow's owner") from None
        ctx = NodeContext(
            run_id=str(run.id),
            workflow_id=str(run.workflow_id),
            owner_id=run.owner_id,
            node_id=nr.node_id,
            node_type=nr.type,
            attempt=nr.attempt,
            config=config if isinstance(config, dict) else {},
            raw_config=node.config,
            data=node.data,
            input=data_in,
            inputs_by_node=active,
            run_input=run.inputs,
            deadline=started + claim.timeout_s,
            timeout_s=claim.timeout_s,
            idempotency_key=f"{run.id}:{nr.node_id}:{nr.attempt}",
            redactor=redactor,
            state=nr.state,
        )
        stored_inputs = _store_inputs(config, data_in, redactor)
        handler = handlers.get(nr.type)
        try:
            output = handler.run(ctx)
        except SoftTimeLimitExceeded:
            raise NodeError("timeout", f"the node ran past its time limit ({claim.timeout_s:g} s)") from None
        elapsed = time.monotonic() - started
        if elapsed > claim.timeout_s + 0.5:
            raise NodeError("timeout", f"the node took {elapsed:.1f} s; its timeout is {claim.timeout_s:g} s")
        output = redactor.redact(_check_output(graph, nr.node_id, nr.type, output))
        return services.Result(kind="success", output=output, inputs=stored_inputs)
    except Defer as d:
        return services.Result(kind="defer", defer_until=d.until, defer_reason=d.reason, state=d.state)
    except NodeError as exc:
        return services.Result(kind="error", error=redactor.redact(exc.as_dict()), retry_after_s=exc.retry_after_s)
    except Exception as exc:  # noqa: BLE001 - a handler bug fails its node, never the worker
        log.exception("executions.handler_crashed", extra={"run_id": str(run.id), "node_id": nr.node_id})
        message = redactor.redact_text(f"{type(exc).__name__}: {exc}")[:1000]
        return services.Result(kind="error", error={"code": "internal", "message": message})
    finally:
        global_redactor().merge(redactor)
