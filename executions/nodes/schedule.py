"""SCHEDULE trigger handler: emits the run input; rejects a bad cron or time zone.

Firing on time is the scheduler's job (``workflows.node_types.schedule.next_fire_time``).
"""

from __future__ import annotations

from typing import Any

from executions.nodes.base import NodeContext, NodeError, NodeHandler, register
from executions.nodes.condition import guarded
from executions.nodes.manual import emit_run_input
from workflows.node_types.schedule import schedule_config_errors


@register
class ScheduleHandler(NodeHandler):
    type = "SCHEDULE"

    @guarded
    def run(self, ctx: NodeContext) -> Any:
        errors = schedule_config_errors(ctx.config)
        if errors:
            details = [{"path": path, "code": code, "message": message} for path, code, message in errors]
            raise NodeError("config", errors[0][2], details=details)
        return emit_run_input(ctx)
