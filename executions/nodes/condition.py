"""CONDITION handler, and the comparison rules SWITCH and DATA_TRANSFORM share.

Two config forms (see ``workflows.node_types.condition``):

- ``{"expression": ...}``. The engine renders config strings before ``run()``,
  so a whole-string template such as ``{{ nodes.a.output.n > 3 }}`` arrives as
  its JSON value. The value decides the branch by these truthiness rules:
  booleans as is; ``null`` is false; a number is true unless 0; a string is
  false when empty or (trimmed, any case) one of ``false, 0, no, off, null,
  none``, else true; a list or object is true unless empty. An expression
  written without ``{{ }}`` (``input.amount > 100``) is evaluated here, in
  the same sandbox, over ``input``, ``nodes.<predecessor>.output`` and
  ``run.id``.
- Comparator rows ``{leftValue, operator, rightValue, dataType}`` under
  ``conditions`` joined by ``combinator`` (``and`` by default), or one row at
  the top level.

Output: ``{"result": bool, ...details}``; the engine follows the ``true`` or
``false`` handle by ``result``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from executions.nodes.base import NodeContext, NodeError, NodeHandler, register
from workflows.node_types.condition import DATA_TYPES, OPERATOR_ALIASES, OPERATORS

MAX_REGEX_PATTERN = 500
MAX_REGEX_SUBJECT = 100_000
MAX_CONDITIONS = 100
# Details copied into the output only when small, so a comparison over a big
# document does not copy the document into the run's history.
MAX_DETAIL_CHARS = 1_000
# A repeated group whose own last atom repeats, e.g. (a+)+ or (\w+\s?)*: the
# classic shape of catastrophic backtracking. Python's re has no timeout, so
# such patterns are refused up front. A heuristic: ([a-z]+\.)+ passes (the
# separator makes it unambiguous), and a rare harmless pattern may be refused.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*(?:[+*?]|\{\d*,\d*\})\)(?:[+*]|\{\d*,\d*\})")
FALSY_STRINGS = frozenset({"", "false", "0", "no", "off", "null", "none"})
TRUE_STRINGS = frozenset({"true", "1", "yes", "on"})

_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(func: _F) -> _F:
    """Turn what hostile data can provoke in pure code into a classified NodeError.

    Handlers validate explicitly; this is the net under them, so malformed
    input never escapes as an unhandled exception.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NodeError:
            raise
        except RecursionError:
            raise NodeError("validation", "data is nested too deeply") from None
        except MemoryError:
            raise NodeError("validation", "data is too large to process") from None
        except (
            TypeError,
            ValueError,
            OverflowError,
            KeyError,
            IndexError,
            AttributeError,
        ) as exc:
            raise NodeError("validation", f"invalid data: {type(exc).__name__}: {exc}") from None

    return wrapper  # type: ignore[return-value]


def canonical_operator(op: Any, where: str = "operator") -> str:
    if not isinstance(op, str) or not op:
        raise NodeError("validation", f"{where}: operator must be a non-empty string")
    if op in OPERATORS:
        return op
    if op in OPERATOR_ALIASES:
        return OPERATOR_ALIASES[op]
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", op).lower().replace(" ", "_").replace("-", "_")
    if snake in OPERATORS:
        return snake
    if snake in OPERATOR_ALIASES:
        return OPERATOR_ALIASES[snake]
    raise NodeError(
        "validation",
        f"{where}: unknown operator {op!r}; expected one of {', '.join(OPERATORS)}",
    )


def truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, (int, float)):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str):
        return value.strip().lower() not in FALSY_STRINGS
    if isinstance(value, (list, tuple, dict)):
        return len(value) > 0
    raise NodeError("validation", f"a value of type {type(value).__name__} has no truth value here")


def small(value: Any) -> Any:
    """``value`` when its JSON is short, else a marker (keeps outputs small)."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return "<not JSON>"
    return value if len(text) <= MAX_DETAIL_CHARS else f"<{len(text)} characters>"


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def to_number(value: Any, where: str) -> float | int:
    if is_number(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise NodeError("validation", f"{where}: {value!r} is not a finite number")
        return value
    if isinstance(value, str):
        text = value.strip()
        if 0 < len(text) <= 100:
            try:
                return int(text)
            except ValueError:
                pass
            try:
                number = float(text)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
    raise NodeError("validation", f"{where}: {_describe(value)} is not a number")


def to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NodeError("validation", f"value of type {type(value).__name__} is not JSON") from exc


def to_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if is_number(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE_STRINGS:
            return True
        if text in FALSY_STRINGS - {""}:
            return False
    raise NodeError("validation", f"{where}: {_describe(value)} is not a boolean")


def to_datetime(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif is_number(value):
        try:
            moment = datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise NodeError("validation", f"{where}: {_describe(value)} is not a valid timestamp") from None
    elif isinstance(value, str) and 0 < len(value.strip()) <= 64:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise NodeError("validation", f"{where}: {_describe(value)} is not an ISO 8601 date") from None
    else:
        raise NodeError("validation", f"{where}: {_describe(value)} is not a date")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def json_equal(left: Any, right: Any) -> bool:
    """Equality of JSON values: 1 == 1.0, but true != 1 and "1" != 1."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if is_number(left) and is_number(right):
        return bool(left == right)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and bool(left == right)


def is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    if isinstance(value, (list, tuple, dict)):
        return len(value) == 0
    return False


def _infer_type(left: Any, right: Any) -> str | None:
    """The data type to compare as when none is given (None = plain JSON)."""
    if is_number(left) and is_number(right):
        return "number"
    if (is_number(left) and isinstance(right, str)) or (is_number(right) and isinstance(left, str)):
        # "200" vs 200: the builder sends text fields; compare as numbers when both parse.
        try:
            to_number(left, "")
            to_number(right, "")
        except NodeError:
            return "string"
        return "number"
    if isinstance(left, str) and isinstance(right, str):
        return "string"
    if isinstance(left, bool) and isinstance(right, bool):
        return "boolean"
    return None


def _coerce(value: Any, data_type: str, where: str, case_sensitive: bool) -> Any:
    if data_type == "number":
        return to_number(value, where)
    if data_type == "boolean":
        return to_bool(value, where)
    if data_type == "date":
        return to_datetime(value, where)
    if data_type == "string":
        text = to_string(value)
        return text if case_sensitive else text.casefold()
    raise NodeError(
        "validation",
        f"{where}: unknown dataType {data_type!r}; expected one of {', '.join(DATA_TYPES)}",
    )


def _regex(subject: Any, pattern: Any, where: str, case_sensitive: bool) -> bool:
    if not isinstance(pattern, str):
        raise NodeError("validation", f"{where}: the regex pattern must be a string")
    if len(pattern) > MAX_REGEX_PATTERN:
        raise NodeError(
            "validation",
            f"{where}: regex pattern longer than {MAX_REGEX_PATTERN} characters",
        )
    if _NESTED_QUANTIFIER.search(pattern):
        raise NodeError(
            "validation",
            f"{where}: regex has a repeated group that itself repeats (like (a+)+), which can run for hours",
        )
    text = to_string(subject)
    if len(text) > MAX_REGEX_SUBJECT:
        raise NodeError(
            "validation",
            f"{where}: regex subject longer than {MAX_REGEX_SUBJECT} characters",
        )
    try:
        compiled = re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)
    except (re.error, RecursionError, OverflowError) as exc:
        raise NodeError("validation", f"{where}: invalid regex pattern: {exc}") from None
    return compiled.search(text) is not None


def compare(
    left: Any,
    operator: Any,
    right: Any = None,
    data_type: Any = None,
    *,
    case_sensitive: Any = True,
    where: str = "condition",
) -> bool:
    """``left <operator> right`` under the comparator rules; NodeError("validation") on bad data."""
    op = canonical_operator(operator, where)
    if data_type is not None and data_type not in DATA_TYPES:
        raise NodeError(
            "validation",
            f"{where}: unknown dataType {data_type!r}; expected one of {', '.join(DATA_TYPES)}",
        )
    sensitive = case_sensitive is not False
    if op == "is_empty":
        return is_empty(left)
    if op == "is_not_empty":
        return not is_empty(left)
    if op == "regex":
        return _regex(left, right, where, sensitive)
    if op in ("contains", "not_contains"):
        found = _contains(left, right, data_type, where, sensitive)
        return found if op == "contains" else not found
    if op in ("starts_with", "ends_with"):
        text = _coerce(left, "string", f"{where} leftValue", sensitive)
        part = _coerce(right, "string", f"{where} rightValue", sensitive)
        return bool(text.startswith(part) if op == "starts_with" else text.endswith(part))
    kind = data_type or _infer_type(left, right)
    if kind is None:
        if op in ("equals", "not_equals"):
            same = json_equal(left, right)
            return same if op == "equals" else not same
        raise NodeError(
            "validation",
            f"{where}: cannot order {type(left).__name__} and {type(right).__name__} with {op}; set a dataType",
        )
    a = _coerce(left, kind, f"{where} leftValue", sensitive)
    b = _coerce(right, kind, f"{where} rightValue", sensitive)
    if op == "equals":
        return bool(a == b)
    if op == "not_equals":
        return bool(a != b)
    if op == "gt":
        return bool(a > b)
    if op == "gte":
        return bool(a >= b)
    if op == "lt":
        return bool(a < b)
    if op == "lte":
        return bool(a <= b)
    raise NodeError("validation", f"{where}: operator {op!r} is not supported here")  # pragma: no cover


def _contains(left: Any, right: Any, data_type: Any, where: str, sensitive: bool) -> bool:
    if isinstance(left, (list, tuple)) and data_type in (
        None,
        "number",
        "boolean",
        "date",
    ):
        if data_type is None:
            return any(json_equal(item, right) for item in left)
        target = _coerce(right, data_type, f"{where} rightValue", sensitive)
        return any(_coerce(item, data_type, f"{where} leftValue item", sensitive) == target for item in left)
    if isinstance(left, dict) and data_type is None:
        return isinstance(right, str) and right in left
    text = _coerce(left, "string", f"{where} leftValue", sensitive)
    part = _coerce(right, "string", f"{where} rightValue", sensitive)
    if len(text) > MAX_REGEX_SUBJECT * 100:
        raise NodeError("validation", f"{where}: leftValue is too long to search")
    return part in text


def evaluate_rows(config: dict[str, Any], where: str = "conditions") -> dict[str, Any]:
    """The comparator form: evaluate every row and join them by the combinator."""
    rows = config.get("conditions")
    if rows is None:
        rows = [
            {
                k: config[k]
                for k in (
                    "leftValue",
                    "operator",
                    "rightValue",
                    "dataType",
                    "caseSensitive",
                )
                if k in config
            }
        ]
        prefix = ""
    else:
        prefix = where
    if not isinstance(rows, list) or not rows:
        raise NodeError("validation", "conditions must be a non-empty list")
    if len(rows) > MAX_CONDITIONS:
        raise NodeError("validation", f"at most {MAX_CONDITIONS} conditions are allowed")
    combinator = config.get("combinator", "and")
    if not isinstance(combinator, str) or combinator.lower() not in ("and", "or"):
        raise NodeError(
            "validation",
            f"combinator must be 'and' or 'or', not {_describe(combinator)}",
        )
    combinator = combinator.lower()
    details: list[dict[str, Any]] = []
    results: list[bool] = []
    for index, row in enumerate(rows):
        label = f"{prefix}/{index}" if prefix else "condition"
        if not isinstance(row, dict):
            raise NodeError("validation", f"{label}: a condition must be an object")
        outcome = compare(
            row.get("leftValue"),
            row.get("operator"),
            row.get("rightValue"),
            row.get("dataType"),
            case_sensitive=row.get("caseSensitive", True),
            where=label,
        )
        results.append(outcome)
        details.append(
            {
                "leftValue": small(row.get("leftValue")),
                "operator": row.get("operator"),
                "rightValue": small(row.get("rightValue")),
                "result": outcome,
            }
        )
    result = all(results) if combinator == "and" else any(results)
    return {"result": result, "combinator": combinator, "conditions": details}


def _expression_context(ctx: NodeContext) -> dict[str, Any]:
    return {
        "input": ctx.run_input,
        "nodes": {node_id: {"output": output} for node_id, output in ctx.inputs_by_node.items()},
        "run": {"id": ctx.run_id, "workflow_id": ctx.workflow_id},
    }


@register
class ConditionHandler(NodeHandler):
    type = "CONDITION"

    @guarded
    def run(self, ctx: NodeContext) -> dict[str, Any]:
        config = ctx.config
        if not isinstance(config, dict):
            raise NodeError("validation", "config must be an object")
        if "expression" in config:
            value = config["expression"]
            raw = ctx.raw_config.get("expression") if isinstance(ctx.raw_config, dict) else None
            if isinstance(raw, str) and "{{" not in raw and isinstance(value, str):
                value = self._evaluate_bare(value, ctx)
            return {"result": truthy(value), "value": small(value)}
        if "conditions" in config or "operator" in config:
            return evaluate_rows(config)
        raise NodeError("validation", "CONDITION needs an expression or conditions")

    @staticmethod
    def _evaluate_bare(expression: str, ctx: NodeContext) -> Any:
        from executions.engine.templates import TemplateError, evaluate

        if not expression.strip():
            raise NodeError("validation", "the expression is empty")
        try:
            return evaluate(expression, _expression_context(ctx), "/expression")
        except TemplateError as exc:
            raise NodeError("template", str(exc), details={"path": "/data/config/expression"}) from None
