"""The handler contract: a class per node type with ``run(ctx) -> output``.

A handler returns its output (JSON), raises ``NodeError`` (classified: the
engine decides on retries from ``code``), or raises ``Defer`` to be woken
later without spending an attempt (DELAY, an open circuit, a rate limit).
Handlers never sleep to wait and never touch the ORM of the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from zyra.redaction import Redactor


class NodeError(Exception):
    """A classified failure. ``code`` is one of the error classes of DESIGN §4."""

    def __init__(self, code: str, message: str, *, details: Any = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retry_after_s = retry_after_s

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out


class Defer(Exception):
    """Park the node until ``until`` (aware datetime) without spending an attempt."""

    def __init__(self, until: datetime, reason: str, *, state: Any = None, message: str = "") -> None:
        super().__init__(message or f"deferred until {until.isoformat()} ({reason})")
        self.until = until
        self.reason = reason  # delay | circuit_open | rate_limited | upstream_429
        self.state = state


@dataclass
class NodeContext:
    run_id: str
    workflow_id: str
    owner_id: int
    node_id: str
    node_type: str
    attempt: int
    config: dict[str, Any]  # rendered (templates resolved)
    raw_config: dict[str, Any]  # as stored in the definition
    data: dict[str, Any]  # node.data (label, retry, ...)
    input: Any  # output of the single active predecessor, or {pred_id: output} for several
    inputs_by_node: dict[str, Any]  # active predecessors' outputs by node id
    run_input: dict[str, Any]
    deadline: float  # time.monotonic() value by which the handler must return
    timeout_s: float
    idempotency_key: str  # stable per (run, node, attempt)
    redactor: Redactor
    state: Any = None  # what the handler stored with its last Defer
    extra: dict[str, Any] = field(default_factory=dict)

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


class NodeHandler:
    type: ClassVar[str]

    def run(self, ctx: NodeContext) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, NodeHandler] = {}

    def register(self, cls: type[NodeHandler]) -> type[NodeHandler]:
        if cls.type in self._handlers:
            raise ValueError(f"handler for {cls.type!r} registered twice")
        self._handlers[cls.type] = cls()
        return cls

    def get(self, type_name: str) -> NodeHandler:
        try:
            return self._handlers[type_name]
        except KeyError:
            raise NodeError("config", f"no handler for node type {type_name!r}") from None

    def has(self, type_name: str) -> bool:
        return type_name in self._handlers


handlers = HandlerRegistry()
register = handlers.register
