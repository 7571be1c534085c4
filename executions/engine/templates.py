"""Template rendering in a sandbox (Jinja2 SandboxedEnvironment; never eval of user text).

Context names: ``input`` (run input / trigger payload), ``nodes.<id>.output``
(upstream outputs), ``secrets.NAME`` (resolved lazily, registered with the
run's redactor), ``run.id``. A string that is one whole ``{{ expr }}`` keeps
the JSON type of its value; mixed text renders to a string, where values that
are not strings are written as JSON (``true``, ``null``, ``{"a": 1}``). The
builder's legacy form ``{{node-id.path}}`` is rewritten to
``nodes["node-id"].output.path`` (names bound by ``{% for %}``, ``{% set %}``,
macros and ``loop`` are left alone).

Limits, so a hostile template fails fast with ``TemplateError`` instead of
eating a worker: operators that build strings, lists or integers (``*``,
``+``, ``~``, ``**``, ``%``), the filters that amplify (``center``,
``indent``, ``join``, ``replace``, ...) and ``str.format`` are checked
*before* they allocate; rendered text is counted as it streams; and one
render has a time budget checked on every attribute access, call and
operator. Data is read-only (no ``list.append`` on an upstream output), and a
dict key wins over a method of the same name (``input.items`` is the key).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import operator
import re
import string
import threading
import time
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from jinja2 import Environment, StrictUndefined, Undefined, UndefinedError
from jinja2 import TemplateError as JinjaTemplateError
from jinja2 import nodes as jnodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

_WHOLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.S)
_EXPR = re.compile(r"\{\{(?P<expr>(?:(?!\}\}).)*)\}\}", re.S)
_LEGACY = re.compile(r"^\s*(?P<id>[A-Za-z0-9_][A-Za-z0-9_\-]*)(?P<rest>(?:\.[A-Za-z0-9_\-]+|\[[^\]]+\])*)\s*$")
_NODE_REF = re.compile(r"""nodes\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['"]([^'"]+)['"]\s*\])""")
_SECRET_REF = re.compile(r"""secrets\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['"]([^'"]+)['"]\s*\])""")
_BLOCK = re.compile(r"\{%-?(?P<body>(?:(?!%\}).)*)-?%\}", re.S)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# ``output`` is the root of edge conditions (``{{ output.ok }}``), not a node id.
ROOT_NAMES = frozenset({"input", "nodes", "secrets", "run", "output", "true", "false", "none", "True", "False", "None"})
# Names Jinja itself binds inside templates.
_TEMPLATE_NAMES = frozenset({"loop", "caller", "varargs", "kwargs", "self", "super"})
MAX_TEMPLATE_LEN = 10_000
MAX_RENDER_LEN = 1_000_000  # characters of rendered text, or items/characters of one built value
MAX_INT_BITS = 4_096  # integers a template may build (about 1,233 digits)
MAX_RENDER_S = 2.0  # time budget of one template string
MAX_FORMAT_WIDTH = 10_000  # width/precision in %-formatting and str.format specs
MAX_ITEMS = 100_000  # items drawn from an iterator into a JSON list


class TemplateError(Exception):
    def __init__(self, path: str, template: str, message: str) -> None:
        super().__init__(f"template {template!r} at {path or '/'}: {message}")
        self.path = path
        self.template = template
        self.message = message


class _LimitExceeded(Exception):
    """A template tried to build something too large or ran out of time."""


# ---- limits -----------------------------------------------------------------

_budget = threading.local()


@contextlib.contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Every template rendered inside shares one deadline, ``seconds`` from now (or an enclosing
    budget's, when nearer), instead of MAX_RENDER_S each: an instant node's whole attempt runs in
    the transaction that made it ready, so all its templates together get what one string gets."""
    previous, previous_what = getattr(_budget, "deadline", None), getattr(_budget, "what", "")
    deadline = time.monotonic() + seconds
    if previous is None or deadline < previous:
        _budget.deadline, _budget.what = deadline, f"the node's templates took longer than {seconds:g} s in all"
    try:
        yield
    finally:
        _budget.deadline, _budget.what = previous, previous_what


def _tick() -> None:
    deadline = getattr(_budget, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise _LimitExceeded(getattr(_budget, "what", "") or f"rendering took longer than {MAX_RENDER_S:g} s")


def _sized(value: Any) -> Any:
    """``value`` if it is within the limits on built values, else _LimitExceeded."""
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_RENDER_LEN:
        raise _LimitExceeded(f"a value longer than {MAX_RENDER_LEN} characters or items")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise _LimitExceeded(f"an integer larger than 2**{MAX_INT_BITS}")
    return value


def _bits(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0
    if isinstance(value, int):
        return float(value.bit_length())
    if isinstance(value, float) and math.isfinite(value) and value:
        return max(0.0, math.log2(abs(value)))
    return 0.0


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?[hlL]?[A-Za-z%]")


def _check_percent_format(fmt: str) -> None:
    for m in _PERCENT_SPEC.finditer(fmt):
        for part in (m.group("width"), m.group("prec")):
            if part is not None and (part == "*" or int(part) > MAX_FORMAT_WIDTH):
                raise _LimitExceeded(f"format width or precision over {MAX_FORMAT_WIDTH} (or '*')")


def _check_brace_format(fmt: str) -> None:
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format itself reports the malformed string
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:
            raise _LimitExceeded("nested fields in a format spec are not allowed")
        for digits in re.findall(r"\d+", spec):
            if int(digits) > MAX_FORMAT_WIDTH:
                raise _LimitExceeded(f"format width or precision over {MAX_FORMAT_WIDTH}")


def _seq_len(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


_BINOP_FUNCS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}


def _safe_binop(op: str, left: Any, right: Any) -> Any:
    """Check what an operator would build before building it."""
    if op == "*":
        for seq, times in ((left, right), (right, left)):
            n = _seq_len(seq)
            if n is not None and isinstance(times, int) and n * max(times, 0) > MAX_RENDER_LEN:
                raise _LimitExceeded(f"'*' would build a value longer than {MAX_RENDER_LEN}")
        if isinstance(left, int) and isinstance(right, int) and _bits(left) + _bits(right) > MAX_INT_BITS + 1:
            raise _LimitExceeded(f"'*' would build an integer larger than 2**{MAX_INT_BITS}")
    elif op == "+":
        a, b = _seq_len(left), _seq_len(right)
        if a is not None and b is not None and a + b > MAX_RENDER_LEN:
            raise _LimitExceeded(f"'+' would build a value longer than {MAX_RENDER_LEN}")
    elif op == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if _bits(left) * right > MAX_INT_BITS + 1:
                raise _LimitExceeded(f"'**' would build an integer larger than 2**{MAX_INT_BITS}")
        elif isinstance(left, (int, float)) and isinstance(right, (int, float)) and abs(left) > 1 and abs(_bits(left) * right) > 1100:
            raise _LimitExceeded("'**' result is out of range")
    elif op == "%" and isinstance(left, str):
        _check_percent_format(left)
    return _sized(_BINOP_FUNCS[op](left, right))


def _text(value: Any) -> str:
    """How a value reads inside mixed text: strings as is, everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(_to_json(value), ensure_ascii=False)


def _finalize(value: Any) -> Any:
    if isinstance(value, (Undefined, str)):
        return value  # str() of a StrictUndefined raises the missing-data error
    return _sized(_text(value))


def _concat(parts: tuple[Any, ...]) -> str:
    """``a ~ b``: counted before joining."""
    texts = [_text(p) if not isinstance(p, Undefined) else str(p) for p in parts]
    if sum(len(t) for t in texts) > MAX_RENDER_LEN:
        raise _LimitExceeded(f"'~' would build a string longer than {MAX_RENDER_LEN}")
    return "".join(texts)


class _CodeGenerator(CodeGenerator):
    def visit_Concat(self, node: jnodes.Concat, frame: Frame) -> None:
        self.write("environment.zyra_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


# str methods that can allocate far more than their input; the filters of the
# same names remain, with checks.
_BLOCKED_STR_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "join", "replace", "encode"})


class _Env(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(_BINOP_FUNCS)
    code_generator_class = _CodeGenerator

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_"):
            return False
        if isinstance(obj, str) and attr in _BLOCKED_STR_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        # Data first: ``input.items`` / ``output.values`` mean the keys, not dict methods.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        return _safe_binop(operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_brace_format(fmt)
            return _sized(wrapped(*args, **kwargs))

        return checked

    def zyra_concat(self, parts: tuple[Any, ...]) -> str:
        _tick()
        return _concat(parts)


_env = _Env(undefined=StrictUndefined, autoescape=False, finalize=_finalize)
_env.globals.clear()


# ---- filters: the ones that amplify get checks; nondeterministic ones go ----


def _wrap_filter(name: str, check: Callable[..., None]) -> None:
    original = _env.filters[name]

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _tick()
        # Filters may take Jinja's context/environment first (pass_* decorators,
        # async variants); the checks look at the filter's own arguments.
        own = args
        while own and isinstance(own[0], (EvalContext, Environment, Context)):
            own = own[1:]
        check(*own, **kwargs)
        return _sized(original(*args, **kwargs))

    _env.filters[name] = wrapper


def _limit(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_RENDER_LEN:
        raise _LimitExceeded(f"{what} over {MAX_RENDER_LEN}")


def _check_center(value: Any, width: Any = 80) -> None:
    _limit(width, "center width")


def _check_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    lines = str(value).count("\n") + 1
    if pad * lines + len(str(value)) > MAX_RENDER_LEN:
        raise _LimitExceeded(f"indent would build more than {MAX_RENDER_LEN} characters")


def _check_wordwrap(value: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None, **kw: Any) -> None:
    text = str(value)
    if isinstance(width, int) and width < 1:
        raise _LimitExceeded("wordwrap width must be at least 1")
    sep = len(wrapstring) if isinstance(wrapstring, str) else 1
    lines = len(text) // max(1, width if isinstance(width, int) else 1) + text.count("\n") + 1
    if len(text) + sep * lines > MAX_RENDER_LEN:
        raise _LimitExceeded(f"wordwrap would build more than {MAX_RENDER_LEN} characters")


def _check_replace(value: Any, old: Any, new: Any, count: Any = None) -> None:
    text, old_s, new_s = str(value), str(old), str(new)
    hits = len(text) + 1 if old_s == "" else text.count(old_s)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * max(0, len(new_s) - len(old_s)) > MAX_RENDER_LEN:
        raise _LimitExceeded(f"replace would build more than {MAX_RENDER_LEN} characters")


def _check_join(value: Any, d: Any = "", attribute: Any = None) -> None:
    n = len(value) if hasattr(value, "__len__") else 0
    if len(str(d)) * max(0, n - 1) > MAX_RENDER_LEN:
        raise _LimitExceeded(f"join would build more than {MAX_RENDER_LEN} characters")


def _check_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_percent_format(str(value))


def _check_batch(value: Any, linecount: Any, fill_with: Any = None) -> None:
    if isinstance(linecount, int) and not 1 <= linecount <= MAX_ITEMS:
        raise _LimitExceeded(f"batch size must be between 1 and {MAX_ITEMS}")


def _check_slice(value: Any, slices: Any, fill_with: Any = None) -> None:
    if isinstance(slices, int) and not 1 <= slices <= MAX_ITEMS:
        raise _LimitExceeded(f"slice count must be between 1 and {MAX_ITEMS}")


for _name, _check in (
    ("center", _check_center),
    ("indent", _check_indent),
    ("wordwrap", _check_wordwrap),
    ("replace", _check_replace),
    ("join", _check_join),
    ("format", _check_format),
    ("batch", _check_batch),
    ("slice", _check_slice),
):
    _wrap_filter(_name, _check)
# Templates must render the same way on every attempt.
_env.filters.pop("random", None)
_env.filters["json"] = lambda v: json.dumps(_to_json(v), ensure_ascii=False)


# ---- legacy form ------------------------------------------------------------


def bound_names(text: str) -> frozenset[str]:
    """Names a template binds itself (loop variables, set, macro and call args, with)."""
    if "{%" not in text:
        return _TEMPLATE_NAMES
    names: set[str] = set(_TEMPLATE_NAMES)
    for m in _BLOCK.finditer(text):
        body = m.group("body").strip().lstrip("+-").strip()
        keyword, _, rest = body.partition(" ")
        candidates: list[str] = []
        if keyword == "for":
            candidates = re.split(r"[,()\s]+", rest.split(" in ", 1)[0])
        elif keyword == "set":
            candidates = rest.split("=", 1)[0].replace("(", ",").replace(")", ",").split(",")
        elif keyword == "macro":
            head, _, args = rest.partition("(")
            candidates = [head, *(a.split("=", 1)[0] for a in args.rstrip(") ").split(","))]
        elif keyword == "with":
            candidates = [part.split("=", 1)[0] for part in rest.split(",")]
        elif keyword.startswith("call"):
            args = body[len("call") :].strip()
            if args.startswith("("):
                candidates = [a.split("=", 1)[0] for a in args[1:].split(")", 1)[0].split(",")]
        names.update(c.strip() for c in candidates if _IDENT.match(c.strip()))
    return frozenset(names)


def _rewrite_legacy(expr: str, bound: frozenset[str] = frozenset()) -> str:
    """``fetch.status`` / ``fetch-1.output.x`` -> ``nodes["fetch"].output...``."""
    m = _LEGACY.match(expr)
    if not m:
        return expr
    ident, rest = m.group("id"), m.group("rest")
    if ident in ROOT_NAMES or ident in bound or ident in _TEMPLATE_NAMES:
        return expr
    if not rest and "-" not in ident:
        # A bare identifier that is not a node id form: leave for Jinja to judge.
        return expr
    rest_clean = rest
    if rest_clean.startswith(".output"):
        rest_clean = rest_clean[len(".output") :]
    parts = re.findall(r"\.([A-Za-z0-9_\-]+)|\[([^\]]+)\]", rest_clean)
    out = f"nodes[{json.dumps(ident)}].output"
    for name, index in parts:
        if name:
            out += f"[{int(name)}]" if name.isdigit() else f"[{json.dumps(name)}]"
        else:
            out += f"[{index}]"
    return out


def is_legacy(expr: str) -> bool:
    return _rewrite_legacy(expr) != expr


def _rewrite_template(source: str) -> str:
    bound = bound_names(source)
    return _EXPR.sub(lambda m: "{{ " + _rewrite_legacy(m.group("expr"), bound) + " }}", source)


@functools.lru_cache(maxsize=4096)
def _compile_expression(expr: str) -> Any:
    return _env.compile_expression(_rewrite_legacy(expr), undefined_to_none=False)


@functools.lru_cache(maxsize=4096)
def _compile_template(source: str) -> Any:
    return _env.from_string(_rewrite_template(source))


def has_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


# ---- values out -------------------------------------------------------------


def _to_json(value: Any) -> Any:
    if isinstance(value, Undefined):
        raise UndefinedError("the expression names something that does not exist or is not allowed")
    if isinstance(value, SecretsView):
        raise JinjaTemplateError("the secrets object cannot be used as a value")
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, str):
        return value if type(value) is str else str(value)  # Markup from |tojson and friends
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise JinjaTemplateError(f"{value} is not a JSON number")
        return value
    if isinstance(value, (Iterator, KeysView, ValuesView, ItemsView)):
        # map()/select() results and dict views: lists, drawn with a cap.
        items = list(itertools.islice(iter(value), MAX_ITEMS + 1))
        if len(items) > MAX_ITEMS:
            raise _LimitExceeded(f"a sequence of more than {MAX_ITEMS} items")
        return [_to_json(v) for v in items]
    if hasattr(value, "__html__"):
        return str(value)
    raise JinjaTemplateError(f"value of type {type(value).__name__} is not JSON")


# ---- rendering --------------------------------------------------------------


def _render_text(template: Any, context: Mapping[str, Any]) -> str:
    parts: list[str] = []
    total = 0
    for chunk in template.generate(**context):
        total += len(chunk)
        if total > MAX_RENDER_LEN:
            raise _LimitExceeded(f"rendered text longer than {MAX_RENDER_LEN} characters")
        _tick()
        parts.append(chunk)
    return "".join(parts)


def render_string(source: str, context: Mapping[str, Any], path: str = "") -> Any:
    if len(source) > MAX_TEMPLATE_LEN:
        raise TemplateError(path, source[:80] + "...", f"template longer than {MAX_TEMPLATE_LEN} characters")
    previous, previous_what = getattr(_budget, "deadline", None), getattr(_budget, "what", "")
    if previous is None:
        _budget.deadline, _budget.what = time.monotonic() + MAX_RENDER_S, ""
    whole = _WHOLE.match(source)
    try:
        if whole and "{{" not in whole.group("expr"):
            return _to_json(_compile_expression(whole.group("expr").strip())(**context))
        return _render_text(_compile_template(source), context)
    except TemplateError:
        raise
    except _LimitExceeded as exc:
        raise TemplateError(path, _short(source), f"limit exceeded: {exc}") from None
    except UndefinedError as exc:
        raise TemplateError(path, source, f"missing data: {_explain_missing(source, context, exc)}") from None
    except JinjaTemplateError as exc:
        raise TemplateError(path, source, str(exc.message or exc)) from None
    except (
        TypeError,
        ValueError,
        ArithmeticError,
        LookupError,
        AttributeError,
        NameError,  # Jinja folds 'nan'|float into generated code as a bare name
        RecursionError,
        MemoryError,
    ) as exc:
        raise TemplateError(path, _short(source), f"{type(exc).__name__}: {exc}"[:500]) from None
    finally:
        _budget.deadline, _budget.what = previous, previous_what


def _short(source: str) -> str:
    return source if len(source) <= 200 else source[:197] + "..."


def render(value: Any, context: Mapping[str, Any], path: str = "") -> Any:
    """Render every template string inside ``value`` (dicts, lists); others are returned as is."""
    try:
        return _render_value(value, context, path)
    except RecursionError:
        raise TemplateError(path, "", "the value is nested too deeply to render") from None


def _render_value(value: Any, context: Mapping[str, Any], path: str) -> Any:
    if isinstance(value, str):
        return render_string(value, context, path) if "{{" in value else value
    if isinstance(value, dict):
        return {k: _render_value(v, context, f"{path}/{_esc(k)}") for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, context, f"{path}/{i}") for i, v in enumerate(value)]
    return value


def evaluate(expression: str, context: Mapping[str, Any], path: str = "") -> Any:
    """An expression, with or without ``{{ }}`` around it, to its value."""
    text = expression.strip()
    whole = _WHOLE.match(text)
    if whole:
        return render_string(text, context, path)
    if "{{" in text:
        return render_string(text, context, path)
    return render_string("{{ " + text + " }}", context, path)


# ---- explaining missing data -----------------------------------------------

_MISSING = object()


def _chain(node: jnodes.Node) -> list[Any] | None:
    """``a.b[0]["c"]`` as ["a", "b", 0, "c"]; the static prefix of a dynamic lookup."""
    if isinstance(node, jnodes.Name):
        return [node.name]
    if isinstance(node, jnodes.Getattr):
        base = _chain(node.node)
        return None if base is None else [*base, node.attr]
    if isinstance(node, jnodes.Getitem):
        base = _chain(node.node)
        if base is None:
            return None
        if isinstance(node.arg, jnodes.Const) and isinstance(node.arg.value, (str, int)):
            return [*base, node.arg.value]
        return base
    return None


def _chains(tree: jnodes.Node) -> list[list[Any]]:
    found: list[list[Any]] = []

    def walk(node: jnodes.Node) -> None:
        if isinstance(node, (jnodes.Getattr, jnodes.Getitem, jnodes.Name)):
            chain = _chain(node)
            if chain is not None:
                found.append(chain)
            if isinstance(node, jnodes.Getitem):
                walk(node.arg)
            if chain is not None:
                return
        for child in node.iter_child_nodes():
            walk(child)

    walk(tree)
    return found


def _dotted(chain: list[Any]) -> str:
    out = str(chain[0])
    for part in chain[1:]:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _describe_container(value: Any) -> str:
    if isinstance(value, dict):
        keys = list(itertools.islice(value.keys(), 11))
        shown = ", ".join(repr(k) for k in keys[:10]) + (", ..." if len(keys) > 10 else "")
        return f"its keys are {shown}" if keys else "it is empty"
    if isinstance(value, list):
        return f"it is a list of {len(value)} items"
    if value is None:
        return "it is null"
    return f"it is a {type(value).__name__}"


def _explain_missing(source: str, context: Mapping[str, Any], exc: UndefinedError) -> str:
    """Name the first data path in the template that does not resolve, and why."""
    fallback = str(exc.message or exc)
    try:
        whole = _WHOLE.match(source)
        if whole and "{{" not in whole.group("expr"):
            tree: jnodes.Node = _env.parse("{{ " + _rewrite_legacy(whole.group("expr").strip()) + " }}")
        else:
            tree = _env.parse(_rewrite_template(source))
        bound = bound_names(source)
        for chain in _chains(tree):
            root = chain[0]
            if root in bound:
                continue
            if root not in context:
                return f"{root!r} is not defined (available: {', '.join(sorted(map(str, context)))})"
            current: Any = context[root]
            if isinstance(current, SecretsView):
                if len(chain) > 1 and str(chain[1]) not in current._cache:
                    return f"secret {chain[1]!r} does not exist or is not available to this workflow"
                continue
            for depth, part in enumerate(chain[1:], start=1):
                nxt: Any = _MISSING
                if isinstance(current, dict) and str(part) in current:
                    nxt = current[str(part)]
                elif isinstance(current, dict) and part in current:
                    nxt = current[part]
                elif isinstance(current, list) and (isinstance(part, int) or str(part).isdigit()):
                    index = int(part)
                    nxt = current[index] if -len(current) <= index < len(current) else _MISSING
                if nxt is _MISSING:
                    if isinstance(part, str) and part.startswith("_"):
                        return f"{_dotted(chain[: depth + 1])} is not allowed (names starting with _ are blocked)"
                    if isinstance(current, (dict, list)) or current is None:
                        return f"{_dotted(chain[: depth + 1])} does not exist ({_dotted(chain[:depth])}: {_describe_container(current)})"
                    break  # an attribute of a scalar (e.g. a str method): not a data path
                current = nxt
    except (JinjaTemplateError, RecursionError, ValueError, TypeError):
        pass
    return fallback


# ---- static analysis --------------------------------------------------------


def _esc(key: str) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}/{_esc(k)}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}/{i}")


def _expressions(text: str) -> Iterator[str]:
    for m in _EXPR.finditer(text):
        yield m.group("expr")


def node_references(value: Any, node_ids: set[str] | None = None) -> list[tuple[str, str]]:
    """(json pointer, node id) for every upstream node a template names."""
    found: list[tuple[str, str]] = []
    for path, text in _strings(value):
        if "{{" not in text:
            continue
        bound = bound_names(text)
        for expr in _expressions(text):
            legacy = _LEGACY.match(expr)
            if (
                legacy
                and legacy.group("id") not in ROOT_NAMES
                and legacy.group("id") not in bound
                and (legacy.group("rest") or "-" in legacy.group("id"))
            ):
                found.append((path, legacy.group("id")))
                continue
            for m in _NODE_REF.finditer(expr):
                found.append((path, m.group(1) or m.group(2)))
    return found


def expression_node_references(expression: str) -> list[str]:
    text = expression if "{{" in expression else "{{ " + expression + " }}"
    return [nid for _, nid in node_references(text)]


def secret_references(value: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path, text in _strings(value):
        if "{{" not in text:
            continue
        for expr in _expressions(text):
            for m in _SECRET_REF.finditer(expr):
                found.append((path, m.group(1) or m.group(2)))
    return found


def syntax_error(text: str) -> str | None:
    """None when every template in ``text`` compiles; else the error message."""
    try:
        whole = _WHOLE.match(text)
        if whole and "{{" not in whole.group("expr"):
            _compile_expression(whole.group("expr").strip())
        else:
            _compile_template(text)
    except JinjaTemplateError as exc:
        return str(exc.message or exc)
    except (RecursionError, MemoryError, ValueError, OverflowError) as exc:
        return f"{type(exc).__name__}"
    return None


class SecretsView(Mapping[str, str]):
    """``secrets.NAME`` inside templates: resolved on first use, then remembered."""

    def __init__(self, resolve: Callable[[str], str]) -> None:
        self._resolve = resolve
        self._cache: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self._cache:
            self._cache[name] = self._resolve(name)
        return self._cache[name]

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0
