"""Template rendering in a sandbox (Jinja2 SandboxedEnvironment; never eval of user text).

Context names: ``input`` (run input / trigger payload), ``nodes.<id>.output``
(upstream outputs), ``secrets.NAME`` (resolved lazily, registered with the
run's redactor), ``run.id``. A string that is one whole ``{{ expr }}`` keeps
the JSON type of its value; mixed text renders to a string. The builder's
legacy form ``{{node-id.path}}`` is rewritten to ``nodes["node-id"].output.path``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, Undefined, UndefinedError
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

_WHOLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.S)
_EXPR = re.compile(r"\{\{(?P<expr>(?:(?!\}\}).)*)\}\}", re.S)
_LEGACY = re.compile(r"^\s*(?P<id>[A-Za-z0-9_][A-Za-z0-9_\-]*)(?P<rest>(?:\.[A-Za-z0-9_\-]+|\[[^\]]+\])*)\s*$")
_NODE_REF = re.compile(r"""nodes\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['"]([^'"]+)['"]\s*\])""")
_SECRET_REF = re.compile(r"""secrets\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['"]([^'"]+)['"]\s*\])""")
ROOT_NAMES = frozenset({"input", "nodes", "secrets", "run", "true", "false", "none", "True", "False", "None"})
MAX_TEMPLATE_LEN = 10_000
MAX_RENDER_LEN = 1_000_000


class TemplateError(Exception):
    def __init__(self, path: str, template: str, message: str) -> None:
        super().__init__(f"template {template!r} at {path or '/'}: {message}")
        self.path = path
        self.template = template
        self.message = message


class _Env(SandboxedEnvironment):
    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_"):
            return False
        return super().is_safe_attribute(obj, attr, value)


_env = _Env(undefined=StrictUndefined, autoescape=False, finalize=None)
_env.filters["json"] = lambda v: json.dumps(v, default=str)
_env.globals.clear()
for _name in ("range", "dict", "lipsum", "cycler", "joiner", "namespace"):
    _env.globals.pop(_name, None)


def _rewrite_legacy(expr: str) -> str:
    """``fetch.status`` / ``fetch-1.output.x`` -> ``nodes["fetch"].output...``."""
    m = _LEGACY.match(expr)
    if not m:
        return expr
    ident, rest = m.group("id"), m.group("rest")
    if ident in ROOT_NAMES:
        return expr
    if not rest and "-" not in ident:
        # A bare identifier that is not a node id form: leave for Jinja to judge.
        return expr
    rest_clean = rest
    if rest_clean.startswith(".output"):
        rest_clean = rest_clean[len(".output"):]
    parts = re.findall(r"\.([A-Za-z0-9_\-]+)|\[([^\]]+)\]", rest_clean)
    out = f'nodes[{json.dumps(ident)}].output'
    for name, index in parts:
        if name:
            out += f"[{int(name)}]" if name.isdigit() else f"[{json.dumps(name)}]"
        else:
            out += f"[{index}]"
    return out


def is_legacy(expr: str) -> bool:
    return _rewrite_legacy(expr) != expr


@functools.lru_cache(maxsize=4096)
def _compile_expression(expr: str) -> Any:
    return _env.compile_expression(_rewrite_legacy(expr), undefined_to_none=False)


@functools.lru_cache(maxsize=4096)
def _compile_template(source: str) -> Any:
    rewritten = _EXPR.sub(lambda m: "{{ " + _rewrite_legacy(m.group("expr")) + " }}", source)
    return _env.from_string(rewritten)


def has_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _to_json(value: Any) -> Any:
    if isinstance(value, Undefined):
        raise UndefinedError("the expression names something that does not exist or is not allowed")
    if isinstance(value, SecretsView):
        raise JinjaTemplateError("the secrets object cannot be used as a value")
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "__html__") or isinstance(value, (bytes,)):
        return str(value)
    raise JinjaTemplateError(f"value of type {type(value).__name__} is not JSON")


def render_string(source: str, context: Mapping[str, Any], path: str = "") -> Any:
    if len(source) > MAX_TEMPLATE_LEN:
        raise TemplateError(path, source[:80] + "...", f"template longer than {MAX_TEMPLATE_LEN} characters")
    try:
        whole = _WHOLE.match(source)
        if whole and "{{" not in whole.group("expr"):
            return _to_json(_compile_expression(whole.group("expr").strip())(**context))
        text = _compile_template(source).render(**context)
        if len(text) > MAX_RENDER_LEN:
            raise TemplateError(path, source, f"rendered text longer than {MAX_RENDER_LEN} characters")
        return text
    except TemplateError:
        raise
    except UndefinedError as exc:
        raise TemplateError(path, source, f"missing data: {exc.message}") from None
    except JinjaTemplateError as exc:
        raise TemplateError(path, source, str(exc.message or exc)) from None
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        raise TemplateError(path, source, f"{type(exc).__name__}: {exc}") from None


def render(value: Any, context: Mapping[str, Any], path: str = "") -> Any:
    """Render every template string inside ``value`` (dicts, lists); others are returned as is."""
    if isinstance(value, str):
        return render_string(value, context, path) if "{{" in value else value
    if isinstance(value, dict):
        return {k: render(v, context, f"{path}/{_esc(k)}") for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context, f"{path}/{i}") for i, v in enumerate(value)]
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
        for expr in _expressions(text):
            legacy = _LEGACY.match(expr)
            if legacy and legacy.group("id") not in ROOT_NAMES and (legacy.group("rest") or "-" in legacy.group("id")):
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
    except (RecursionError, MemoryError, ValueError) as exc:
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
