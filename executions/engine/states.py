"""Status transitions: the one function every status change goes through."""

from __future__ import annotations

RUN_TERMINAL = frozenset({"succeeded", "partially_succeeded", "failed", "cancelled", "timed_out"})
NODE_TERMINAL = frozenset({"succeeded", "failed", "skipped", "cancelled", "timed_out"})
# Nodes that hold a slot of the run's parallelism budget.
NODE_IN_FLIGHT = frozenset({"queued", "running", "deferred", "retrying"})

_RUN_ALLOWED: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "cancelled", "failed", "timed_out"}),
    "running": frozenset({"succeeded", "partially_succeeded", "failed", "cancelled", "timed_out"}),
    # Resume / retry-from-failed reopen a finished run.
    "failed": frozenset({"running"}),
    "cancelled": frozenset({"running"}),
    "timed_out": frozenset({"running"}),
    "partially_succeeded": frozenset({"running"}),
    "succeeded": frozenset(),
}

_NODE_ALLOWED: dict[str, frozenset[str]] = {
    "pending": frozenset({"queued", "skipped", "cancelled", "succeeded"}),
    "queued": frozenset({"running", "cancelled", "queued", "skipped"}),
    # running -> skipped: a disabled node, claimed like any other, hands its input on without running.
    "running": frozenset({"succeeded", "failed", "timed_out", "retrying", "deferred", "cancelled", "queued", "skipped"}),
    "deferred": frozenset({"running", "queued", "cancelled"}),
    "retrying": frozenset({"running", "queued", "cancelled"}),
    # Resume re-opens failed/cancelled/timed_out/skipped nodes.
    "failed": frozenset({"pending", "queued"}),
    "timed_out": frozenset({"pending", "queued"}),
    "cancelled": frozenset({"pending", "queued"}),
    "skipped": frozenset({"pending", "queued"}),
    "succeeded": frozenset(),
}


class IllegalTransition(Exception):
    def __init__(self, kind: str, old: str, new: str) -> None:
        super().__init__(f"illegal {kind} transition {old} -> {new}")
        self.kind, self.old, self.new = kind, old, new


def check_run_transition(old: str, new: str) -> str:
    if new not in _RUN_ALLOWED.get(old, frozenset()):
        raise IllegalTransition("run", old, new)
    return new


def check_node_transition(old: str, new: str) -> str:
    if new not in _NODE_ALLOWED.get(old, frozenset()):
        raise IllegalTransition("node", old, new)
    return new
