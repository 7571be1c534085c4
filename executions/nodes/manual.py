"""MANUAL trigger handler: emits the run input (checked against ``input_schema``)."""

from __future__ import annotations

from typing import Any

from executions.nodes.base import NodeContext, NodeError, NodeHandler, register
from executions.nodes.condition import guarded


def check_input_schema(config: Any, run_input: Any) -> None:
    """Raise NodeError("validation") when the run input breaks the declared schema."""
    if not isinstance(config, dict) or "input_schema" not in config:
        return
    schema = config["input_schema"]
    if not isinstance(schema, dict):
        raise NodeError("config", "input_schema must be an object (a JSON Schema)")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise NodeError("config", f"input_schema is not a valid JSON Schema: {exc.message}") from None
    errors = sorted(
        Draft202012Validator(schema).iter_errors(run_input),
        key=lambda e: list(e.absolute_path),
    )
    if errors:
        details = [
            {
                "path": "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in e.absolute_path),
                "code": "input_schema",
                "message": e.message[:500],
            }
            for e in errors[:50]
        ]
        raise NodeError(
            "validation",
            f"the run input does not match input_schema: {errors[0].message[:200]}",
            details=details,
        )


def emit_run_input(ctx: NodeContext) -> Any:
    check_input_schema(ctx.config, ctx.run_input)
    return ctx.run_input if ctx.run_input is not None else {}


@register
class ManualHandler(NodeHandler):
    type = "MANUAL"

    @guarded
    def run(self, ctx: NodeContext) -> Any:
        return emit_run_input(ctx)
