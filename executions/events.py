"""Run events: written in the transaction of the change they record, broadcast after commit.

A service that holds a run's row lock collects events in a ``RunTx`` and
flushes them together with the run's counters; ``event_record`` is the
one-off form for callers outside the engine (e.g. circuit transitions).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from executions.models import NodeStatus, Run, RunEvent
from zyra.redaction import global_redactor


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def truncate_for_event(value: Any) -> Any:
    """Outputs in events are capped (the full output stays available over REST)."""
    if value is None:
        return None
    cap = settings.ZYRA_EVENT_OUTPUT_BYTES
    text = json.dumps(value, default=str, ensure_ascii=False)
    if len(text.encode("utf-8")) <= cap:
        return value
    return {"truncated": True, "size": len(text.encode("utf-8")), "preview": text[: max(0, cap // 2)]}


def payload(event: RunEvent, run: Run) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type,
        "run_id": str(run.id),
        "workflow_id": str(run.workflow_id),
        "node_id": event.node_id or None,
        "ts": iso(event.ts),
        "data": event.data,
    }


def payload_from_row(event: RunEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type,
        "run_id": str(event.run_id),
        "workflow_id": str(event.run.workflow_id),
        "node_id": event.node_id or None,
        "ts": iso(event.ts),
        "data": event.data,
    }


class RunTx:
    """Bookkeeping of one transaction on a locked run: events and messages to send after commit."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.events: list[RunEvent] = []
        # (node_run_id, attempt, queue, countdown, broker priority)
        self.dispatch: list[tuple[int, int, str, float, int]] = []
        self.now = timezone.now()
        self.dirty: dict[int, Any] = {}  # node runs changed in memory, saved before any read and at flush
        # Every node run this transaction changed (saved or not), by id and by node id: the current
        # state of those rows, which a read of the database may not show yet.
        self.rows: dict[int, Any] = {}
        self.by_node: dict[str, Any] = {}
        self.parkable: set[int] = set()  # node runs queued by this transaction whose message may be held back
        # Rows read in the round trip that took the lock (fastsql.lock_run_with):
        # successors by node id; per queue, the queued nodes a sibling claim would take, and whether
        # that read saw all of them (it asked for more than there were).
        self.prefetched: dict[str, Any] = {}
        self.siblings: dict[str, tuple[list[Any], bool]] = {}
        # Ready nodes waiting for a slot, read with the lock, and whether that read saw all of them.
        self.waiting: tuple[list[Any], bool] | None = None
        self.parked: tuple[list[Any], bool] | None = None  # parked nodes read with the lock, likewise
        self.reached: set[str] = set()  # instant nodes whose reach has been read (services._prefetch_instant_reach)

    def held(self, node_id: str) -> Any:
        """The row of ``node_id`` this transaction holds: changed by it (not in the database yet), else
        read with its lock; None if neither."""
        return self.by_node.get(node_id) or self.prefetched.get(node_id)

    def touch(self, *rows: Any) -> None:
        for row in rows:
            self.dirty[row.pk] = row
            self.rows[row.pk] = row
            self.by_node[row.node_id] = row

    def _first_untouched(self, read: tuple[list[Any], bool] | None) -> tuple[Any, bool]:
        """From rows read with the lock: (the next one this transaction has not changed, or None;
        whether the database must be asked instead, because that read may not have seen them all)."""
        if read is None:
            return None, True
        rows, complete = read
        while rows:
            row = rows.pop(0)
            if row.pk not in self.rows:
                return row, False
        return None, not complete

    def take_sibling(self, queue: str) -> tuple[Any, bool]:
        """A queued node of ``queue`` for a sibling claim (see ``_first_untouched``)."""
        return self._first_untouched(self.siblings.get(queue))

    def take_waiting(self, free: int) -> list[Any] | None:
        """Up to ``free`` ready nodes waiting for a slot, lowest topological index first, from the rows
        read with the lock and those this transaction made ready; None: ask the database."""
        if self.waiting is None:
            return None
        rows, complete = self.waiting
        untouched = [row for row in rows if row.pk not in self.rows]
        if not complete and len(untouched) < free:
            return None
        mine = [row for row in self.rows.values() if row.status == NodeStatus.PENDING and row.pending_deps == 0 and row.active_in > 0]
        taken = sorted(untouched + mine, key=lambda row: row.topo_index)[:free]
        ids = {row.pk for row in taken}
        self.waiting = ([row for row in untouched if row.pk not in ids], complete)
        return taken

    def take_parked(self) -> tuple[Any, bool]:
        """A parked node (see ``_first_untouched``). Nodes this transaction parks are parked at its flush."""
        return self._first_untouched(self.parked)

    def save_dirty(self) -> None:
        if self.dirty:
            from executions import fastsql
            from executions.models import NodeRun
            from executions.services import NODE_FIELDS

            fastsql.update_rows(NodeRun, list(self.dirty.values()), NODE_FIELDS)
            self.dirty = {}

    def event(self, type_: str, node_id: str = "", data: dict[str, Any] | None = None) -> RunEvent:
        run = self.run
        run.event_seq += 1
        body = dict(data or {})
        body.setdefault("progress", {"done": run.nodes_done, "total": run.nodes_total})
        redactor = global_redactor()
        if redactor.active():
            body = redactor.redact(body)
        ev = RunEvent(run=run, seq=run.event_seq, type=type_, node_id=node_id, ts=timezone.now(), data=body)
        self.events.append(ev)
        return ev

    def send(self, node_run_id: int, attempt: int, queue: str, countdown: float = 0.0, urgent: bool = False) -> None:
        # Redis priorities: 0 is served first. Interactive runs (priority 9) go ahead of bulk ones (0).
        # Urgent: the sweeper's recoveries, which have already waited a lease or a lost message.
        broker_priority = 0 if urgent else max(0, min(9, 9 - int(self.run.priority)))
        self.dispatch.append((node_run_id, attempt, queue, countdown, broker_priority))
        if not urgent and countdown <= 0:
            self.parkable.add(node_run_id)

    def _park(self) -> None:
        """Hold back the messages beyond ``ZYRA_DISPATCH_AHEAD`` per queue (see that setting).

        A parked node stays ``queued`` with ``dispatched_at`` null: the threads
        that finish its siblings take it (parked first), and a completion that
        takes nothing sends one a message, so the carriers sent keep going.
        """
        ahead = int(settings.ZYRA_DISPATCH_AHEAD)
        if ahead <= 0 or not settings.ZYRA_INLINE_SIBLINGS or not self.parkable:
            return
        sent: dict[str, int] = {}
        keep = []
        for item in self.dispatch:
            node_run_id, _attempt, queue, _countdown, _priority = item
            row = self.dirty.get(node_run_id)
            if node_run_id in self.parkable and row is not None and row.status == NodeStatus.QUEUED:
                sent[queue] = sent.get(queue, 0) + 1
                if sent[queue] > ahead:
                    row.dispatched_at = None
                    continue
            keep.append(item)
        self.dispatch = keep

    def flush(self, run_fields: list[str], node_fields: list[str] | None = None, commit: bool = False) -> None:
        """Save the run's changed fields, node runs and events; schedule broadcast and dispatch after commit.

        ``commit``: the caller's outermost ``atomic`` block ends right after this
        call; on PostgreSQL the COMMIT then travels with the writes (one round
        trip less while the run row is locked) and Django's own commit finds
        nothing left to do. Ignored inside an enclosing transaction.
        """
        from executions import fastsql
        from executions.models import NodeRun
        from executions.services import NODE_FIELDS

        if node_fields is None:
            self._park()
        self.parkable = set()
        fields = list(dict.fromkeys([*run_fields, "event_seq"])) if self.events else run_fields
        rows: list[NodeRun] = list(self.dirty.values())
        self.dirty = {}
        fastsql.write_all(rows, node_fields or NODE_FIELDS, self.run, fields, self.events, commit=commit)
        if self.events:
            payloads = [payload(e, self.run) for e in self.events]
            transaction.on_commit(lambda: _publish(payloads))
        if self.dispatch:
            items = list(self.dispatch)
            from executions.dispatch import send_many

            transaction.on_commit(lambda: send_many(items))
        self.events = []
        self.dispatch = []


def _publish(payloads: list[dict[str, Any]]) -> None:
    from executions.broadcast import publish

    publish(payloads)


@transaction.atomic
def event_record(*, run_id: Any, type: str, node_id: str = "", data: dict[str, Any] | None = None) -> RunEvent | None:
    """Append one event to a run (locks the run row briefly). Missing runs are ignored."""
    run = Run.objects.select_for_update().filter(id=run_id).first()
    if run is None:
        return None
    tx = RunTx(run)
    ev = tx.event(type, node_id, data)
    tx.flush([])
    return ev
