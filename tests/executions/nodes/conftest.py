"""Helpers for handler unit tests: a NodeContext built directly, no database."""

from __future__ import annotations

import time
from typing import Any

import pytest

import executions.nodes  # noqa: F401 - registers every handler
from executions.nodes.base import NodeContext, NodeError, handlers
from zyra.redaction import Redactor


def make_ctx(
    node_type: str,
    config: Any = None,
    *,
    input: Any = None,
    inputs_by_node: dict[str, Any] | None = None,
    run_input: dict[str, Any] | None = None,
    state: Any = None,
    raw_config: Any = None,
) -> NodeContext:
    config = {} if config is None else config
    return NodeContext(
        run_id="run-1",
        workflow_id="wf-1",
        owner_id=1,
        node_id="n1",
        node_type=node_type,
        attempt=1,
        config=config,
        raw_config=config if raw_config is None else raw_config,
        data={"config": config},
        input=input,
        inputs_by_node=inputs_by_node if inputs_by_node is not None else {},
        run_input=run_input if run_input is not None else {},
        deadline=time.monotonic() + 30,
        timeout_s=30,
        idempotency_key="run-1:n1:1",
        redactor=Redactor(),
        state=state,
    )


def run_node(node_type: str, config: Any = None, **kwargs: Any) -> Any:
    return handlers.get(node_type).run(make_ctx(node_type, config, **kwargs))


def node_error(node_type: str, config: Any = None, **kwargs: Any) -> NodeError:
    with pytest.raises(NodeError) as info:
        run_node(node_type, config, **kwargs)
    return info.value
