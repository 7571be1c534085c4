"""MERGE handler: combines the outputs of the predecessors that ran.

Modes: ``object`` (default) ``{node_id: output}``; ``list`` ``[output, ...]``;
``merge`` a shallow merge of object outputs. Order is by node id, so the result
does not depend on which branch finished first; in ``merge`` mode a later
node id wins a key both define. Skipped predecessors are simply absent.
"""

from __future__ import annotations

from typing import Any

from executions.nodes.base import NodeContext, NodeError, NodeHandler, register
from executions.nodes.condition import guarded
from workflows.node_types.merge import MODES


@register
class MergeHandler(NodeHandler):
    type = "MERGE"

    @guarded
    def run(self, ctx: NodeContext) -> Any:
        config = ctx.config if isinstance(ctx.config, dict) else {}
        mode = config.get("mode", "object")
        if mode not in MODES:
            raise NodeError("validation", f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        inputs = ctx.inputs_by_node
        if not isinstance(inputs, dict):
            raise NodeError("validation", "the predecessors' outputs are not an object")
        ordered = [(node_id, inputs[node_id]) for node_id in sorted(inputs, key=str)]
        if mode == "object":
            return {str(node_id): output for node_id, output in ordered}
        if mode == "list":
            return [output for _, output in ordered]
        merged: dict[str, Any] = {}
        for node_id, output in ordered:
            if output is None:
                continue
            if not isinstance(output, dict):
                raise NodeError(
                    "validation",
                    f"merge mode needs object outputs; node {node_id!r} gave {type(output).__name__}",
                )
            merged.update(output)
        return merged
