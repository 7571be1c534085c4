"""WEBHOOK trigger handler: emits the request payload the run started with."""

from __future__ import annotations

from typing import Any

from executions.nodes.base import NodeContext, NodeHandler, register
from executions.nodes.condition import guarded
from executions.nodes.manual import emit_run_input


@register
class WebhookHandler(NodeHandler):
    type = "WEBHOOK"

    @guarded
    def run(self, ctx: NodeContext) -> Any:
        return emit_run_input(ctx)
