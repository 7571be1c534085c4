"""Node-type registry: each type declares its category, JSON Schemas and defaults.

Handlers (behaviour) live in ``executions.nodes`` and register separately, keyed
by the same type string; this module is the contract the UI and the validator
see (served by ``GET /api/node-types/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Category = Literal["trigger", "action", "logic"]
QueueName = Literal["io", "cpu"]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 1  # total attempts including the first
    backoff_s: float = 1.0  # base delay before the 2nd attempt
    max_backoff_s: float = 60.0  # cap on one delay
    multiplier: float = 2.0  # exponential growth per attempt
    jitter: float = 0.2  # +/- fraction of randomness on each delay

    def as_dict(self) -> dict[str, float]:
        return {
            "max_attempts": self.max_attempts,
            "backoff_s": self.backoff_s,
            "max_backoff_s": self.max_backoff_s,
            "multiplier": self.multiplier,
            "jitter": self.jitter,
        }


@dataclass(frozen=True)
class NodeTypeSpec:
    type: str  # canonical UPPER_SNAKE name
    category: Category
    label: str
    description: str
    config_schema: dict[str, Any]
    output_schema: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 30.0  # default per-attempt timeout
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    queue: QueueName = "cpu"
    side_effects: bool = False  # gets an idempotency key; at-least-once matters
    # Source handles an outgoing edge may use; None = any (plain edges).
    handles: tuple[str, ...] | None = None
    # Whether the type can start a run (trigger roots).
    is_trigger: bool = False
    # Its handler does no I/O, never waits, and its work is capped (triggers hand the input on; DELAY
    # computes when to wake and defers; CALCULATOR, CONDITION, SWITCH and MERGE compute on bounded
    # input): such nodes run in the transaction that made them ready (a run's start, a completion) or
    # that claims them, instead of as a message to a worker (ZYRA_INLINE_TRIGGERS, ZYRA_INSTANT_NODES).
    instant: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "category": self.category,
            "label": self.label,
            "description": self.description,
            "config_schema": self.config_schema,
            "output_schema": self.output_schema,
            "defaults": {"timeout_s": self.timeout_s, "retry": self.retry.as_dict(), "queue": self.queue},
            "side_effects": self.side_effects,
            "handles": list(self.handles) if self.handles is not None else None,
        }


class RegistryError(Exception):
    pass


class DuplicateNodeType(RegistryError):
    pass


class UnknownNodeType(RegistryError):
    def __init__(self, type_name: str) -> None:
        super().__init__(f"unknown node type {type_name!r}")
        self.type_name = type_name


class NodeTypeRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, NodeTypeSpec] = {}

    def register(self, spec: NodeTypeSpec) -> NodeTypeSpec:
        if spec.type in self._specs:
            raise DuplicateNodeType(f"node type {spec.type!r} registered twice")
        if spec.type != spec.type.upper():
            raise RegistryError(f"node type {spec.type!r} must be UPPER_SNAKE")
        self._specs[spec.type] = spec
        return spec

    def get(self, type_name: str) -> NodeTypeSpec:
        try:
            return self._specs[type_name]
        except KeyError:
            raise UnknownNodeType(type_name) from None

    def has(self, type_name: str) -> bool:
        return type_name in self._specs

    def all(self) -> list[NodeTypeSpec]:
        return [self._specs[k] for k in sorted(self._specs)]


node_types = NodeTypeRegistry()
