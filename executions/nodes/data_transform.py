"""DATA_TRANSFORM handler: declarative operations, never code execution.

The value starts as ``config.source`` (rendered; the node's input when absent)
and passes through ``config.operations`` in order. Output: ``{"result": value}``.

Paths name data inside a value: ``a.b.0.c`` or ``a.b[0].c``; the empty path is
the value itself. Operations (lists are lists of items; "item value" is the
item at the op's path):

- ``map`` ``{"fields": {"out": "path.in.item"}, "keep"?: bool}``: each item (or
  the object) becomes ``{out: value at path}`` (added to a copy of the item with
  ``keep``). A missing path gives null.
- ``filter`` ``{"field", "operator", "value"?, "dataType"?}``: keeps the items
  whose value matches, with CONDITION's operators; an item without the field
  matches only equals/not_equals/is_empty/is_not_empty tests.
- ``aggregate`` ``{"field"?, "fn": sum|avg|min|max|count|first|last|list,
  "group_by"?}``: one value, or ``{group: value}`` grouped by a path; nulls are
  ignored by sum/avg/min/max, count counts items.
- ``format`` ``{"template": "{name} is {age}", "field"?}``: ``{path}``
  placeholders replaced by the item's values (only substitution: no attribute
  access, no format specs); a list gives a list of strings, or with ``field``
  each item gets the string under that key.
- ``extract`` ``{"path", "default"?}``: the value at the path; missing data is
  an error unless a default is given.
- ``combine`` ``{"mode": merge|concat|zip, "sources"?: [...]}``: combines the
  given sources (else the current list): merge shallow-merges objects, concat
  joins lists, zip pairs items by position (pairs of objects are merged, other
  pairs become lists; stops at the shortest).
- ``sort`` ``{"field"?, "order"?: asc|desc}``: stable; numbers before strings,
  nulls last.
- ``limit`` ``{"count", "offset"?}``; ``unique`` ``{"field"?}`` keeps the first
  item of each distinct value.

Bad data or config: ``NodeError("validation")`` naming the operation index.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from executions.nodes.base import NodeContext, NodeError, NodeHandler, register
from executions.nodes.condition import compare, guarded, is_number, to_number
from workflows.node_types.data_transform import AGGREGATE_FNS, MAX_OPERATIONS, OPS

MAX_ITEMS = 100_000  # items in a list an operation takes or produces
MAX_NODES = 1_000_000  # JSON values in the source
MAX_DEPTH = 64  # nesting of the source
MAX_PATH_LEN = 500
MAX_PATH_PARTS = 50
MAX_FORMAT_CHARS = 5_000_000  # all strings one format op produces
MAX_FIELDS = 500
MAX_GROUPS = 10_000

_PATH_TOKEN = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_\-. \[\]]*)\}")
_MISSING = object()


class _OpError(Exception):
    pass


def check_json(value: Any, what: str = "source") -> None:
    """Reject non-JSON values, nesting deeper than MAX_DEPTH, and more than MAX_NODES values.

    Iterative, so hostile nesting cannot exhaust the stack.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise NodeError("validation", f"{what} holds more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise NodeError("validation", f"{what} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise NodeError("validation", f"{what} has a non-string object key {key!r}")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise NodeError("validation", f"{what} holds a non-finite number")
        elif item is not None and not isinstance(item, (str, int, bool)):
            raise NodeError("validation", f"{what} holds a {type(item).__name__}, which is not JSON")


def parse_path(path: Any) -> list[str | int]:
    if not isinstance(path, str):
        raise _OpError("a path must be a string")
    if len(path) > MAX_PATH_LEN:
        raise _OpError(f"path longer than {MAX_PATH_LEN} characters")
    text = path.strip()
    if not text:
        return []
    parts: list[str | int] = []
    for segment in text.split("."):
        if segment == "":
            raise _OpError(f"path {path!r} has an empty segment")
        pos = 0
        for m in _PATH_TOKEN.finditer(segment):
            if m.start() != pos:
                raise _OpError(f"path {path!r} is malformed")
            pos = m.end()
            parts.append(int(m.group(1)) if m.group(1) is not None else m.group(2))
        if pos != len(segment):
            raise _OpError(f"path {path!r} is malformed")
    if len(parts) > MAX_PATH_PARTS:
        raise _OpError(f"path has more than {MAX_PATH_PARTS} parts")
    return parts


def get_path(value: Any, parts: list[str | int]) -> Any:
    """The value at ``parts``, or _MISSING. Digit names index lists; list[-1] is not supported."""
    current = value
    for part in parts:
        if isinstance(current, dict):
            key = str(part)
            if key not in current:
                return _MISSING
            current = current[key]
        elif isinstance(current, list):
            if isinstance(part, str):
                if not part.isdigit():
                    return _MISSING
                part = int(part)
            if part >= len(current):
                return _MISSING
            current = current[part]
        else:
            return _MISSING
    return current


def _at(value: Any, parts: list[str | int]) -> Any:
    found = get_path(value, parts)
    return None if found is _MISSING else found


def _as_list(value: Any, op: str) -> list[Any]:
    if not isinstance(value, list):
        raise _OpError(f"{op} needs a list, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if is_number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _cap(items: list[Any], op: str) -> list[Any]:
    if len(items) > MAX_ITEMS:
        raise _OpError(f"{op} would produce more than {MAX_ITEMS} items")
    return items


def _canon(value: Any) -> Any:
    """Integral floats as ints, so 1 and 1.0 are one value (as in JSON)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _canon(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canon(v) for v in value]
    return value


def _json_key(value: Any) -> str:
    return json.dumps(_canon(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# ---- operations --------------------------------------------------------------


def op_map(value: Any, spec: dict[str, Any]) -> Any:
    fields = spec.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise _OpError("map needs a non-empty 'fields' object {output name: path}")
    if len(fields) > MAX_FIELDS:
        raise _OpError(f"map takes at most {MAX_FIELDS} fields")
    compiled = [(str(name), parse_path(path)) for name, path in fields.items()]
    keep = spec.get("keep", False) is True

    def one(item: Any) -> dict[str, Any]:
        out: dict[str, Any] = dict(item) if keep and isinstance(item, dict) else {}
        for name, parts in compiled:
            out[name] = _at(item, parts)
        return out

    if isinstance(value, list):
        return [one(item) for item in value]
    return one(value)


_ORDER_TESTS = frozenset({"equals", "not_equals", "is_empty", "is_not_empty", "isEmpty", "isNotEmpty"})


def op_filter(value: Any, spec: dict[str, Any], index: int) -> list[Any]:
    items = _as_list(value, "filter")
    parts = parse_path(spec.get("field", ""))
    operator = spec.get("operator")
    if operator is None:
        raise _OpError("filter needs an operator")
    out = []
    for position, item in enumerate(items):
        found = get_path(item, parts)
        if (found is _MISSING or found is None) and operator not in _ORDER_TESTS:
            continue
        if compare(
            None if found is _MISSING else found,
            operator,
            spec.get("value"),
            spec.get("dataType"),
            case_sensitive=spec.get("caseSensitive", True),
            where=f"operations/{index} (filter) item {position}",
        ):
            out.append(item)
    return out


def _aggregate(values: list[Any], fn: str, index: int) -> Any:
    if fn == "count":
        return len(values)
    if fn == "list":
        return list(values)
    if fn == "first":
        return values[0] if values else None
    if fn == "last":
        return values[-1] if values else None
    numbers: list[int | float] = []
    for position, item in enumerate(values):
        if item is None:
            continue
        numbers.append(to_number(item, f"operations/{index} (aggregate {fn}) item {position}"))
    if fn == "sum":
        total = sum(numbers)
        _finite(total, fn)
        return total
    if not numbers:
        return None
    if fn == "avg":
        # fsum: exact, and no overflow on the running total of large floats.
        result = math.fsum(numbers) / len(numbers)
        _finite(result, fn)
        return result
    return min(numbers) if fn == "min" else max(numbers)


def _finite(number: Any, fn: str) -> None:
    too_big = isinstance(number, int) and number.bit_length() > 1024
    if too_big or (isinstance(number, float) and not math.isfinite(number)):
        raise _OpError(f"{fn} overflowed")


def op_aggregate(value: Any, spec: dict[str, Any], index: int) -> Any:
    items = _as_list(value, "aggregate")
    fn = spec.get("fn")
    if fn not in AGGREGATE_FNS:
        raise _OpError(f"fn must be one of {', '.join(AGGREGATE_FNS)}, not {fn!r}")
    parts = parse_path(spec.get("field", ""))
    if "group_by" not in spec:
        values = items if fn == "count" else [_at(item, parts) for item in items]
        return _aggregate(values, fn, index)
    group_parts = parse_path(spec["group_by"])
    groups: dict[str, list[Any]] = {}
    for item in items:
        key = _text(_at(item, group_parts))
        if key not in groups and len(groups) >= MAX_GROUPS:
            raise _OpError(f"group_by produced more than {MAX_GROUPS} groups")
        groups.setdefault(key, []).append(item if fn == "count" else _at(item, parts))
    return {key: _aggregate(values, fn, index) for key, values in groups.items()}


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self, text: str) -> str:
        self.left -= len(text)
        if self.left < 0:
            raise _OpError(f"format would produce more than {MAX_FORMAT_CHARS} characters")
        return text


def format_template(template: str, item: Any, budget: _Budget) -> str:
    """``{path}`` substitution only: no attribute access, no format specs, no code."""

    def replace(m: re.Match[str]) -> str:
        inner = m.group(1).strip()
        found = get_path(item, parse_path(inner)) if inner else item
        return budget.spend(_text(None if found is _MISSING else found))

    return budget.spend(_PLACEHOLDER.sub(replace, template))


def op_format(value: Any, spec: dict[str, Any]) -> Any:
    template = spec.get("template")
    if not isinstance(template, str):
        raise _OpError("format needs a 'template' string")
    field = spec.get("field")
    budget = _Budget(MAX_FORMAT_CHARS)
    if field is not None:
        if not isinstance(field, str) or not field:
            raise _OpError("format 'field' must be a non-empty string")
        items = value if isinstance(value, list) else [value]
        out = []
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                raise _OpError(f"format with 'field' needs objects; item {position} is {_kind(item)}")
            out.append({**item, field: format_template(template, item, budget)})
        return out if isinstance(value, list) else out[0]
    if isinstance(value, list):
        return [format_template(template, item, budget) for item in value]
    return format_template(template, value, budget)


def op_extract(value: Any, spec: dict[str, Any]) -> Any:
    path = spec.get("path")
    found = get_path(value, parse_path(path))
    if found is _MISSING:
        if "default" in spec:
            return spec["default"]
        raise _OpError(f"path {path!r} was not found")
    return found


def op_combine(value: Any, spec: dict[str, Any]) -> Any:
    mode = spec.get("mode")
    sources = spec.get("sources", value)
    if not isinstance(sources, list):
        raise _OpError(f"combine needs a list of values to combine, got {_kind(sources)}")
    if mode == "merge":
        merged: dict[str, Any] = {}
        for position, part in enumerate(sources):
            if part is None:
                continue
            if not isinstance(part, dict):
                raise _OpError(f"combine merge needs objects; item {position} is {_kind(part)}")
            merged.update(part)
        return merged
    if mode == "concat":
        out: list[Any] = []
        for part in sources:
            if isinstance(part, list):
                out.extend(part)
            elif part is not None:
                out.append(part)
            _cap(out, "combine")
        return out
    if mode == "zip":
        lists = []
        for position, part in enumerate(sources):
            if not isinstance(part, list):
                raise _OpError(f"combine zip needs lists; item {position} is {_kind(part)}")
            lists.append(part)
        if not lists:
            return []
        zipped: list[Any] = []
        for row in zip(*lists, strict=False):
            if all(isinstance(cell, dict) for cell in row):
                joined: dict[str, Any] = {}
                for cell in row:
                    joined.update(cell)
                zipped.append(joined)
            else:
                zipped.append(list(row))
        return zipped
    raise _OpError(f"combine mode must be merge, concat or zip, not {mode!r}")


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None or value is _MISSING:
        return (4, 0)
    if isinstance(value, bool):
        return (2, int(value))
    if is_number(value):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (3, _json_key(value))


def op_sort(value: Any, spec: dict[str, Any]) -> list[Any]:
    items = _as_list(value, "sort")
    parts = parse_path(spec.get("field", ""))
    order = spec.get("order", "asc")
    if order not in ("asc", "desc"):
        raise _OpError(f"order must be asc or desc, not {order!r}")
    keyed = [(_sort_key(get_path(item, parts)), item) for item in items]
    present = [pair for pair in keyed if pair[0][0] != 4]
    absent = [pair for pair in keyed if pair[0][0] == 4]
    present.sort(key=lambda pair: pair[0], reverse=order == "desc")
    # Nulls stay last in either order.
    return [item for _, item in present] + [item for _, item in absent]


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise _OpError(f"{name} must be a whole number")
    number = to_number(value, name)
    if isinstance(number, float):
        if not number.is_integer():
            raise _OpError(f"{name} must be a whole number")
        number = int(number)
    if number < 0:
        raise _OpError(f"{name} must not be negative")
    return number


def op_limit(value: Any, spec: dict[str, Any]) -> list[Any]:
    items = _as_list(value, "limit")
    if "count" not in spec:
        raise _OpError("limit needs a count")
    count = _count(spec["count"], "count")
    offset = _count(spec.get("offset", 0), "offset")
    return items[offset : offset + count]


def op_unique(value: Any, spec: dict[str, Any]) -> list[Any]:
    items = _as_list(value, "unique")
    parts = parse_path(spec.get("field", ""))
    seen: set[str] = set()
    out = []
    for item in items:
        key = _json_key(_at(item, parts))
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


_SIMPLE: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "map": op_map,
    "format": op_format,
    "extract": op_extract,
    "combine": op_combine,
    "sort": op_sort,
    "limit": op_limit,
    "unique": op_unique,
}


def apply_operation(value: Any, spec: Any, index: int) -> Any:
    where = f"operations/{index}"
    if not isinstance(spec, dict):
        raise NodeError("validation", f"{where}: an operation must be an object")
    op = spec.get("op")
    if op not in OPS:
        raise NodeError(
            "validation",
            f"{where}: unknown op {op!r}; expected one of {', '.join(OPS)}",
        )
    if isinstance(value, list) and len(value) > MAX_ITEMS:
        raise NodeError("validation", f"{where} ({op}): the list has more than {MAX_ITEMS} items")
    try:
        if op == "filter":
            result = op_filter(value, spec, index)
        elif op == "aggregate":
            result = op_aggregate(value, spec, index)
        else:
            result = _SIMPLE[op](value, spec)
    except _OpError as exc:
        raise NodeError("validation", f"{where} ({op}): {exc}") from None
    except NodeError as exc:
        if exc.message.startswith(where):
            raise
        raise NodeError(exc.code, f"{where} ({op}): {exc.message}", details=exc.details) from None
    if isinstance(result, list) and len(result) > MAX_ITEMS:
        raise NodeError("validation", f"{where} ({op}): the result has more than {MAX_ITEMS} items")
    return result


def transform(source: Any, operations: Any) -> Any:
    check_json(source, "source")
    if not isinstance(operations, list):
        raise NodeError("validation", "operations must be a list")
    if len(operations) > MAX_OPERATIONS:
        raise NodeError("validation", f"at most {MAX_OPERATIONS} operations are allowed")
    check_json(operations, "operations")
    value = source
    for index, spec in enumerate(operations):
        value = apply_operation(value, spec, index)
    return value


@register
class DataTransformHandler(NodeHandler):
    type = "DATA_TRANSFORM"

    @guarded
    def run(self, ctx: NodeContext) -> dict[str, Any]:
        config = ctx.config
        if not isinstance(config, dict):
            raise NodeError("validation", "config must be an object")
        if "operations" not in config:
            raise NodeError("validation", "DATA_TRANSFORM needs 'operations' (a list, possibly empty)")
        source = config.get("source", ctx.input)
        return {"result": transform(source, config["operations"])}
