"""SWITCH handler: the first case that matches the value chooses the handle.

A case is ``{"handle", "equals": x}`` (the value equals x under the comparator
rules) or ``{"handle", "operator", "value", "dataType"?}`` (``<switch value>
<operator> <case value>``). No match chooses ``default_handle`` (``"default"``).
The value is ``config.value`` (rendered), or the node's input when absent.
Output: ``{"handle", "case_index", "value"}``; the engine follows the edges whose
``sourceHandle`` equals ``handle``.
"""

from __future__ import annotations

from typing import Any

from executions.nodes.base import NodeContext, NodeError, NodeHandler, register
from executions.nodes.condition import compare, guarded, small

MAX_CASES = 100
MAX_HANDLE_LEN = 100
DEFAULT_HANDLE = "default"
RESERVED_HANDLES = frozenset({"error"})


def _check_handle(handle: Any, where: str) -> str:
    if not isinstance(handle, str) or not handle or len(handle) > MAX_HANDLE_LEN:
        raise NodeError(
            "validation",
            f"{where}: handle must be a string of 1 to {MAX_HANDLE_LEN} characters",
        )
    if handle in RESERVED_HANDLES:
        raise NodeError("validation", f"{where}: handle {handle!r} is reserved for the error branch")
    return handle


@register
class SwitchHandler(NodeHandler):
    type = "SWITCH"

    @guarded
    def run(self, ctx: NodeContext) -> dict[str, Any]:
        config = ctx.config
        if not isinstance(config, dict):
            raise NodeError("validation", "config must be an object")
        cases = config.get("cases")
        if not isinstance(cases, list) or not cases:
            raise NodeError("validation", "cases must be a non-empty list")
        if len(cases) > MAX_CASES:
            raise NodeError("validation", f"at most {MAX_CASES} cases are allowed")
        default = _check_handle(config.get("default_handle", DEFAULT_HANDLE), "default_handle")
        value = config.get("value", ctx.input)
        seen: set[str] = set()
        for index, case in enumerate(cases):
            where = f"cases/{index}"
            if not isinstance(case, dict):
                raise NodeError("validation", f"{where}: a case must be an object")
            handle = _check_handle(case.get("handle"), where)
            if handle in seen:
                raise NodeError(
                    "validation",
                    f"{where}: handle {handle!r} is used by an earlier case",
                )
            seen.add(handle)
        for index, case in enumerate(cases):
            where = f"cases/{index}"
            if "equals" in case:
                matched = compare(
                    value,
                    "equals",
                    case["equals"],
                    case.get("dataType"),
                    case_sensitive=case.get("caseSensitive", True),
                    where=where,
                )
            elif "operator" in case:
                matched = compare(
                    value,
                    case["operator"],
                    case.get("value"),
                    case.get("dataType"),
                    case_sensitive=case.get("caseSensitive", True),
                    where=where,
                )
            else:
                raise NodeError("validation", f"{where}: a case needs 'equals' or 'operator'")
            if matched:
                return {
                    "handle": case["handle"],
                    "case_index": index,
                    "value": small(value),
                }
        return {"handle": default, "case_index": None, "value": small(value)}
