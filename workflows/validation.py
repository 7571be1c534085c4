"""Validation of a submitted workflow definition: every problem at once.

``validate_definition`` takes the document exactly as the builder sent it and
returns a list of ``ErrorDetail`` (JSON pointer into that document, stable code,
message); an empty list means the definition is valid. Pointers address the
submitted document, not the canonical form: the builder highlights the field
the user typed. Normalisation keeps node and edge order, so indices match.

The work is about linear in the size of the definition: one pass over nodes,
one over edges, Kahn's algorithm, Tarjan for cycles, ancestor bitsets for the
"template names an upstream node" rule, compiled JSON Schema validators cached
per node type, and templates parsed (not compiled) with a cache.

Stable codes: not_an_object, not_a_list, empty_workflow, too_many_nodes,
too_many_edges, too_deeply_nested, invalid_node, missing_id, invalid_id,
duplicate_id, missing_type, unknown_type, invalid_data, invalid_config,
invalid_retry, invalid_timeout, invalid_on_error, invalid_output_schema,
invalid_field, invalid_edge, duplicate_edge_id, dangling_edge, self_loop, cycle,
invalid_handle, invalid_condition, template_syntax, too_much_template_text, unknown_node_reference,
not_upstream, unknown_secret, invalid_setting; plus the codes of a type's own
config checks (SCHEDULE: invalid_cron, invalid_timezone).
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError as JinjaTemplateError
from jinja2 import nodes as jinja_nodes
from jinja2.parser import Parser
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from executions.engine import templates
from executions.engine.graph import Edge, find_cycle
from workflows.definition import WRAPPER_TYPES, canonical_type_name
from workflows.registry import NodeTypeSpec, node_types
from zyra.errors import ErrorDetail

ON_ERROR_VALUES = ("stop", "continue", "error_branch")
CONDITION_HANDLES = ("true", "false")
MAX_DEPTH = 64  # nesting of objects/arrays; the builder never goes past ~10
MAX_MESSAGE = 300  # jsonschema messages embed the instance; keep them readable
MAX_RETRY_ATTEMPTS = 20
MAX_PARALLEL_NODES = 1000
EDGES_PER_NODE_CAP = 10  # edge cap = this x node cap
# Total characters of template text in one definition (settings.ZYRA_MAX_TEMPLATE_CHARS):
# a 2,000-node workflow with a template per node has ~120 k.
DEFAULT_TEMPLATE_TEXT_CAP = 512 * 1024


def _esc(part: object) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def _ptr(base: str, *parts: object) -> str:
    return base + "".join("/" + _esc(p) for p in parts)


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Iterative, so a hostile document cannot blow the stack here."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= limit:
                return True
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if depth >= limit:
                return True
            stack.extend((v, depth + 1) for v in item)
    return False


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            stack.extend((v, f"{where}/{_esc(k)}") for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, f"{where}/{i}") for i, v in reversed(list(enumerate(item))))


# --- templates ---------------------------------------------------------------


def _check_names(tree: jinja_nodes.Node) -> None:
    """What Jinja's code generator would reject that its parser does not.

    Iterative: ``Node.find_all`` recurses through nested generators, which is
    quadratic in the depth of a long attribute chain.
    """
    env = templates._env
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, jinja_nodes.Filter) and node.name not in env.filters:
            raise JinjaTemplateError(f"no filter named {node.name!r}")
        if isinstance(node, jinja_nodes.Test) and node.name not in env.tests:
            raise JinjaTemplateError(f"no test named {node.name!r}")
        stack.extend(node.iter_child_nodes())


MAX_TEMPLATE_NESTING = 50  # brackets inside one template; the parser recurses per level


def _unclosed(text: str) -> str | None:
    """The opening delimiter that is never closed, if any.

    Such text is a syntax error anyway, and it is the one shape on which the
    engine's scanning regexes are quadratic (each unclosed ``{{`` rescans to
    the end: ten seconds for 10 kB), so it is caught first, in linear time.
    """
    for opener, closer in (("{{", "}}"), ("{%", "%}"), ("{#", "#}")):
        last = text.rfind(opener)
        if last >= 0 and text.find(closer, last + 2) < 0:
            return opener
    return None


def _nesting_exceeds(text: str, limit: int) -> bool:
    depth = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            if depth > limit:
                return True
        elif ch in ")]}":
            depth = max(0, depth - 1)
    return False


def template_node_references(text: str) -> list[str]:
    """Node ids the templates of a well-formed ``text`` name."""
    return [node_id for _, node_id in templates.node_references(text)]


def template_secret_references(text: str) -> list[str]:
    """Secret names the templates of a well-formed ``text`` name."""
    return [name for _, name in templates.secret_references(text)]


@functools.lru_cache(maxsize=16384)
def template_syntax_error(text: str) -> str | None:
    """None when every template in ``text`` is well formed, else the message.

    Same verdict as ``templates.syntax_error`` (the engine's renderer), but it
    parses instead of compiling to Python code, which is five times cheaper
    (a 2,000-node definition has thousands of templates), and it stays linear
    on hostile input.
    """
    if len(text) > templates.MAX_TEMPLATE_LEN:
        return f"template longer than {templates.MAX_TEMPLATE_LEN} characters"
    opener = _unclosed(text)
    if opener is not None:
        return f"an opening {opener} is never closed"
    if _nesting_exceeds(text, MAX_TEMPLATE_NESTING):
        return f"brackets nest deeper than {MAX_TEMPLATE_NESTING} levels"
    env = templates._env
    try:
        whole = templates._WHOLE.match(text)
        if whole and "{{" not in whole.group("expr"):
            source = templates._rewrite_legacy(whole.group("expr").strip())
            parser = Parser(env, source, state="variable")
            expr = parser.parse_expression()
            if not parser.stream.eos:
                return "unexpected text after the expression"
            _check_names(expr)
        else:
            _check_names(env.parse(templates._rewrite_template(text)))
    except JinjaTemplateError as exc:
        return str(exc.message or exc)
    except (RecursionError, MemoryError, ValueError, OverflowError) as exc:
        return type(exc).__name__
    return None


# --- node types ----------------------------------------------------------------


_validators: dict[str, tuple[NodeTypeSpec, Draft202012Validator]] = {}


def config_validator(spec: NodeTypeSpec) -> Draft202012Validator:
    """The compiled validator of a type's config schema, built once per type."""
    cached = _validators.get(spec.type)
    if cached is not None and cached[0] is spec:
        return cached[1]
    validator = Draft202012Validator(spec.config_schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    _validators[spec.type] = (spec, validator)
    return validator


def _switch_handles(config: Any) -> set[str] | None:
    """The handles a SWITCH may route to (its cases' and its default); None if unknown."""
    if not isinstance(config, dict) or not isinstance(config.get("cases"), list):
        return None
    handles: set[str] = set()
    for case in config["cases"]:
        if isinstance(case, dict) and isinstance(case.get("handle"), str):
            handles.add(case["handle"])
    default = config.get("default_handle")
    handles.add(default if isinstance(default, str) and default else "default")
    return handles


@functools.lru_cache(maxsize=256)
def _extra_config_check(type_name: str) -> Callable[[Any], list[tuple[str, str, str]]] | None:
    """A type's own checks beyond its schema, if its spec module declares them.

    Convention: ``workflows/node_types/<type>.py`` may define
    ``<type>_config_errors(config) -> [(pointer inside config, code, message)]``
    (SCHEDULE does, for cron expressions and time zones).
    """
    name = type_name.lower()
    try:
        module = importlib.import_module(f"workflows.node_types.{name}")
    except ImportError:
        return None
    check = getattr(module, f"{name}_config_errors", None)
    return check if callable(check) else None


# --- the validator ---------------------------------------------------------------


@dataclass
class _NodeInfo:
    index: int
    id: str
    type: str | None
    config: dict[str, Any] | None
    on_error: str
    refs: list[tuple[str, str]] = field(default_factory=list)  # (pointer, referenced id)


@dataclass
class _Validation:
    max_nodes: int
    owner: Any
    errors: list[ErrorDetail] = field(default_factory=list)
    nodes: dict[str, _NodeInfo] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    edge_index: dict[int, int] = field(default_factory=dict)  # id(Edge) -> index in submitted edges
    edge_refs: list[tuple[str, str, str]] = field(default_factory=list)  # (pointer, source id, referenced id)
    secret_refs: list[tuple[str, str]] = field(default_factory=list)
    template_budget: int = 0  # characters of template text still to check

    def add(self, path: str, code: str, message: str) -> None:
        self.errors.append(ErrorDetail(path, code, _short(message)))

    # nodes ------------------------------------------------------------------

    def node(self, index: int, raw: Any, first_index: dict[str, int]) -> None:
        base = f"/nodes/{index}"
        if not isinstance(raw, dict):
            self.add(base, "invalid_node", "a node must be an object")
            return
        node_id = self._node_id(base, raw, first_index, index)
        type_name = self._node_type(base, raw)
        data = raw.get("data")
        if data is not None and not isinstance(data, dict):
            self.add(f"{base}/data", "invalid_data", "data must be an object")
            data = None
        data = data or {}
        config = data.get("config")
        if config is None:
            config = {}
        elif not isinstance(config, dict):
            self.add(f"{base}/data/config", "invalid_config", "config must be an object")
            config = None
        spec = node_types.get(type_name) if type_name is not None and node_types.has(type_name) else None
        if spec is not None and config is not None:
            self._config(f"{base}/data/config", spec, config)
        on_error = self._node_fields(base, data)
        info = _NodeInfo(index=index, id=node_id or "", type=type_name, config=config, on_error=on_error)
        if config is not None:
            self._templates(f"{base}/data/config", config, info)
        if node_id is not None and node_id not in self.nodes:
            self.nodes[node_id] = info
            self.order.append(node_id)

    def _node_id(self, base: str, raw: dict[str, Any], first_index: dict[str, int], index: int) -> str | None:
        if "id" not in raw or raw["id"] is None:
            self.add(f"{base}/id", "missing_id", "every node needs an id")
            return None
        node_id = raw["id"]
        if not isinstance(node_id, str) or not node_id.strip():
            self.add(f"{base}/id", "invalid_id", "a node id must be a non-empty string")
            return None
        if len(node_id) > 200:
            self.add(f"{base}/id", "invalid_id", "a node id must be at most 200 characters")
            return None
        if node_id in first_index:
            self.add(f"{base}/id", "duplicate_id", f"node id {node_id!r} is already used by /nodes/{first_index[node_id]}")
            return None
        first_index[node_id] = index
        return node_id

    def _node_type(self, base: str, raw: dict[str, Any]) -> str | None:
        declared = raw.get("type")
        raw_data = raw.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        if declared is None or (isinstance(declared, str) and declared in WRAPPER_TYPES):
            if "blockType" in data:
                where, value = f"{base}/data/blockType", data.get("blockType")
            elif "type" in data:
                where, value = f"{base}/data/type", data.get("type")
            else:
                where = f"{base}/data/blockType" if declared is not None else f"{base}/type"
                self.add(where, "missing_type", "the node has no block type (set type, or data.blockType)")
                return None
        else:
            where, value = f"{base}/type", declared
        name = canonical_type_name(value)
        if name is None:
            self.add(where, "missing_type", "the block type must be a non-empty string")
            return None
        if not node_types.has(name):
            known = ", ".join(s.type for s in node_types.all())
            self.add(where, "unknown_type", f"unknown block type {value!r} (known: {known})")
            return None
        return name

    def _config(self, base: str, spec: NodeTypeSpec, config: dict[str, Any]) -> None:
        extra = _extra_config_check(spec.type)
        if extra is not None:
            for where, code, message in extra(config):
                self.add(base + where, code, message)
        for error in config_validator(spec).iter_errors(config):
            # A template string stands for a value known only at run time (a
            # whole-string template keeps its JSON type): do not judge it by
            # the type or format the schema expects of the rendered value.
            if templates.has_template(error.instance):
                continue
            path = list(error.absolute_path)
            if error.validator == "required" and isinstance(error.instance, dict):
                # Point at the missing field itself, which is where the UI shows it.
                missing = [p for p in error.validator_value if p not in error.instance and repr(p) in error.message]
                if missing:
                    path.append(missing[0])
            self.add(_ptr(base, *path), "invalid_config", error.message)

    def _node_fields(self, base: str, data: dict[str, Any]) -> str:
        retry = data.get("retry")
        if retry is not None:
            if not isinstance(retry, dict):
                self.add(f"{base}/data/retry", "invalid_retry", "retry must be an object")
            else:
                attempts = retry.get("max_attempts")
                if attempts is not None and (not _is_int(attempts) or not 1 <= attempts <= MAX_RETRY_ATTEMPTS):
                    self.add(
                        f"{base}/data/retry/max_attempts",
                        "invalid_retry",
                        f"max_attempts must be an integer from 1 to {MAX_RETRY_ATTEMPTS}",
                    )
                for key in ("backoff_s", "max_backoff_s", "multiplier", "jitter"):
                    value = retry.get(key)
                    if value is not None and (not _is_number(value) or value < 0):
                        self.add(f"{base}/data/retry/{key}", "invalid_retry", f"{key} must be a number >= 0")
        timeout = data.get("timeout_s")
        if timeout is not None:
            from django.conf import settings

            cap = settings.ZYRA_MAX_NODE_TIMEOUT_S
            if not _is_number(timeout) or timeout <= 0 or timeout > cap:
                self.add(f"{base}/data/timeout_s", "invalid_timeout", f"timeout_s must be a number > 0 and <= {cap}")
        on_error: str = "stop"
        error_key = "on_error" if "on_error" in data else "onError" if "onError" in data else None
        if error_key is not None:
            value = data[error_key]
            if value not in ON_ERROR_VALUES:
                self.add(f"{base}/data/{error_key}", "invalid_on_error", f"on_error must be one of {', '.join(ON_ERROR_VALUES)}")
            else:
                on_error = str(value)
        schema = data.get("output_schema")
        if schema is not None:
            if not isinstance(schema, (dict, bool)):
                self.add(f"{base}/data/output_schema", "invalid_output_schema", "output_schema must be a JSON Schema object")
            else:
                try:
                    Draft202012Validator.check_schema(schema)
                except SchemaError as exc:
                    self.add(_ptr(f"{base}/data/output_schema", *exc.absolute_path), "invalid_output_schema", exc.message)
        enabled = data.get("isEnabled")
        if enabled is not None and not isinstance(enabled, bool):
            self.add(f"{base}/data/isEnabled", "invalid_field", "isEnabled must be true or false")
        return on_error

    def _spend(self, text: str) -> bool:
        """Charge ``text`` to the template budget; False (reported once) when it runs out.

        Parsing costs up to ~30 us per character on hostile input, so the total
        template text of one definition is capped to keep a request bounded.
        """
        if self.template_budget < 0:
            return False
        self.template_budget -= len(text)
        if self.template_budget < 0:
            self.add("", "too_much_template_text", f"the templates of this definition exceed {template_text_cap()} characters in total")
            return False
        return True

    def _templates(self, base: str, config: dict[str, Any], info: _NodeInfo) -> None:
        for where, text in _strings(config, base):
            if "{{" not in text:
                continue
            if not self._spend(text):
                return
            problem = template_syntax_error(text)
            if problem is not None:
                self.add(where, "template_syntax", f"template error: {problem}")
                continue
            for ref in template_node_references(text):
                info.refs.append((where, ref))
            for name in template_secret_references(text):
                self.secret_refs.append((where, name))

    # edges ------------------------------------------------------------------

    def edge(self, index: int, raw: Any, seen_ids: dict[str, int]) -> None:
        base = f"/edges/{index}"
        if not isinstance(raw, dict):
            self.add(base, "invalid_edge", "an edge must be an object")
            return
        edge_id = raw.get("id")
        if edge_id is not None and not isinstance(edge_id, str):
            self.add(f"{base}/id", "invalid_edge", "an edge id must be a string")
        elif isinstance(edge_id, str) and edge_id:
            if edge_id in seen_ids:
                self.add(f"{base}/id", "duplicate_edge_id", f"edge id {edge_id!r} is already used by /edges/{seen_ids[edge_id]}")
            else:
                seen_ids[edge_id] = index
        ends: dict[str, str | None] = {}
        for key in ("source", "target"):
            value = raw.get(key)
            if not isinstance(value, str) or not value:
                self.add(f"{base}/{key}", "invalid_edge", f"an edge needs a {key} node id")
                ends[key] = None
            elif value not in self.nodes:
                self.add(f"{base}/{key}", "dangling_edge", f"{key} {value!r} is not a node of this workflow")
                ends[key] = None
            else:
                ends[key] = value
        source, target = ends["source"], ends["target"]
        if source is not None and source == target:
            self.add(base, "self_loop", f"edge connects node {source!r} to itself")
            return
        handle = raw.get("sourceHandle")
        if handle == "":
            handle = None
        if source is not None:
            self._handle(f"{base}/sourceHandle", self.nodes[source], handle)
        data = raw.get("data")
        condition = data.get("condition") if isinstance(data, dict) else None
        if condition is not None and not (isinstance(condition, str) and not condition.strip()):
            where = f"{base}/data/condition"
            if not isinstance(condition, str):
                self.add(where, "invalid_condition", "an edge condition must be an expression string")
            else:
                text = condition if "{{" in condition else "{{ " + condition + " }}"
                problem = template_syntax_error(text) if self._spend(text) else None
                if problem is not None:
                    self.add(where, "template_syntax", f"template error: {problem}")
                elif source is not None:
                    for ref in template_node_references(text):
                        if ref != "output":  # older scanners read output.x as a legacy node reference
                            self.edge_refs.append((where, source, ref))
        if source is not None and target is not None:
            edge = Edge(
                id=str(edge_id or index),
                source=source,
                target=target,
                source_handle=handle if isinstance(handle, str) else None,
                condition=None,
            )
            self.edge_index[id(edge)] = index
            self.edges.append(edge)

    def _handle(self, where: str, source: _NodeInfo, handle: Any) -> None:
        allowed: set[str] | None
        if source.type == "CONDITION":
            allowed = set(CONDITION_HANDLES)
        elif source.type == "SWITCH":
            allowed = _switch_handles(source.config)
        elif source.type is not None and node_types.has(source.type):
            spec_handles = node_types.get(source.type).handles
            # "error" is only a real exit when the node routes errors to it.
            allowed = set(spec_handles) - {"error"} if spec_handles is not None else None
        else:
            allowed = None
        if allowed is None:
            return
        if source.on_error == "error_branch":
            allowed.add("error")
        if handle not in allowed:
            got = "no handle" if handle is None else f"handle {handle!r}"
            self.add(
                where,
                "invalid_handle",
                f"an edge from {source.type} node {source.id!r} must leave from one of {', '.join(sorted(allowed))}; it has {got}",
            )

    # graph ------------------------------------------------------------------

    def graph(self) -> None:
        order = self._kahn()
        if len(order) != len(self.order):
            self._cycles(set(self.order) - set(order))
        self._references(order)

    def _kahn(self) -> list[str]:
        indeg = dict.fromkeys(self.order, 0)
        self.out: dict[str, list[Edge]] = {n: [] for n in self.order}
        self.inc: dict[str, list[Edge]] = {n: [] for n in self.order}
        for e in self.edges:
            self.out[e.source].append(e)
            self.inc[e.target].append(e)
            indeg[e.target] += 1
        ready = [n for n in self.order if indeg[n] == 0]
        order: list[str] = []
        while ready:
            n = ready.pop()
            order.append(n)
            for e in self.out[n]:
                indeg[e.target] -= 1
                if indeg[e.target] == 0:
                    ready.append(e.target)
        return order

    def _cycles(self, remaining: set[str]) -> None:
        """One error per strongly connected component, naming one cycle in it."""
        for component in _strongly_connected(remaining, self.out):
            members = set(component)
            local = [e for n in component for e in self.out[n] if e.target in members]
            ordered = sorted(component, key=lambda n: self.nodes[n].index)
            cycle = find_cycle(ordered, local) or ordered
            closing = next((e for e in local if e.source == cycle[-1] and e.target == cycle[0]), local[0])
            names = " -> ".join([*cycle, cycle[0]])
            self.add(f"/edges/{self.edge_index[id(closing)]}", "cycle", f"the edges form a cycle: {names}")

    def _references(self, order: list[str]) -> None:
        # Ancestor sets as integer bitsets in topological order: one OR per
        # edge, so the upstream rule stays linear for chains of thousands.
        bit = {n: i for i, n in enumerate(self.order)}
        ancestors: dict[str, int] = {}
        for n in order:
            acc = 0
            for e in self.inc[n]:
                acc |= ancestors.get(e.source, 0) | (1 << bit[e.source])
            ancestors[n] = acc
        fallback: dict[str, set[str]] = {}

        def upstream(ref: str, of: str) -> bool:
            if of in ancestors:
                return bool(ancestors[of] >> bit[ref] & 1)
            if of not in fallback:  # downstream of a cycle (already reported)
                seen: set[str] = set()
                stack = [of]
                while stack:
                    for e in self.inc[stack.pop()]:
                        if e.source not in seen:
                            seen.add(e.source)
                            stack.append(e.source)
                fallback[of] = seen
            return ref in fallback[of]

        for node_id in self.order:
            for where, ref in self.nodes[node_id].refs:
                self._reference(where, ref, node_id, upstream, f"node {node_id!r}")
        for where, source, ref in self.edge_refs:
            # The engine evaluates an edge condition with its source's output
            # only (``output`` or ``nodes.<source>.output``), plus input and run.
            if ref == source:
                continue
            if ref not in self.nodes:
                self.add(where, "unknown_node_reference", f"the condition names node {ref!r}, which is not in this workflow")
            else:
                self.add(
                    where,
                    "invalid_condition",
                    f"an edge condition sees only its source's output (output or nodes.{source}.output), input and run; not node {ref!r}",
                )

    def _reference(self, where: str, ref: str, of: str, upstream: Callable[[str, str], bool], who: str) -> None:
        if ref not in self.nodes:
            self.add(where, "unknown_node_reference", f"the template names node {ref!r}, which is not in this workflow")
        elif not upstream(ref, of):
            self.add(where, "not_upstream", f"the template names node {ref!r}, which does not run before {who}")

    # secrets ----------------------------------------------------------------

    def secrets(self) -> None:
        if self.owner is None or not self.secret_refs:
            return
        try:
            selectors = importlib.import_module("secrets_vault.selectors")
        except ModuleNotFoundError:
            return  # the vault is not there yet: nothing to check against
        names_for = getattr(selectors, "secret_names_for_owner", None)
        if names_for is None:
            return
        owner_id = getattr(self.owner, "pk", self.owner)
        names = set(names_for(owner_id))
        for where, name in self.secret_refs:
            if name not in names:
                self.add(where, "unknown_secret", f"you have no secret named {name!r}")

    # settings -----------------------------------------------------------------

    def settings(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            self.add("/settings", "invalid_setting", "settings must be an object")
            return
        timeout = value.get("timeout_s")
        if timeout is not None and (not _is_number(timeout) or timeout <= 0):
            self.add("/settings/timeout_s", "invalid_setting", "timeout_s must be a positive number of seconds")
        parallel = value.get("max_parallel_nodes")
        if parallel is not None and (not _is_int(parallel) or not 1 <= parallel <= MAX_PARALLEL_NODES):
            self.add(
                "/settings/max_parallel_nodes", "invalid_setting", f"max_parallel_nodes must be an integer from 1 to {MAX_PARALLEL_NODES}"
            )
        sequential = value.get("sequential")
        if sequential is not None and not isinstance(sequential, bool):
            self.add("/settings/sequential", "invalid_setting", "sequential must be true or false")


def _strongly_connected(members: set[str], out: dict[str, list[Edge]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; only components that contain a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    succ_of = {n: [e.target for e in out[n] if e.target in members] for n in members}
    for start in sorted(members):
        if start in index:
            continue
        work: list[tuple[str, int]] = [(start, 0)]
        while work:
            node, pos = work.pop()
            if pos == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = succ_of[node]
            if pos < len(succ):
                work.append((node, pos + 1))
                nxt = succ[pos]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == node:
                        break
                if len(component) > 1:
                    result.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return result


def template_text_cap() -> int:
    from django.conf import settings

    return int(getattr(settings, "ZYRA_MAX_TEMPLATE_CHARS", DEFAULT_TEMPLATE_TEXT_CAP))


def validate_definition(definition: Any, *, max_nodes: int | None = None, owner: Any = None) -> list[ErrorDetail]:
    """Every problem of ``definition`` (as submitted), or ``[]`` when it is valid.

    ``owner`` (a user or user id) enables the ``unknown_secret`` rule.
    ``max_nodes`` defaults to ``settings.ZYRA_MAX_NODES``; a definition over the
    cap gets only its structural errors (checking it further is the cost the
    cap exists to bound).
    """
    if max_nodes is None:
        from django.conf import settings

        max_nodes = int(settings.ZYRA_MAX_NODES)
    v = _Validation(max_nodes=max_nodes, owner=owner, template_budget=template_text_cap())
    if not isinstance(definition, dict):
        v.add("", "not_an_object", "the definition must be a JSON object with nodes and edges")
        return v.errors
    nodes = definition.get("nodes")
    edges = definition.get("edges")
    if nodes is None:
        v.add("/nodes", "empty_workflow", "the workflow has no nodes")
        nodes = []
    elif not isinstance(nodes, list):
        v.add("/nodes", "not_a_list", "nodes must be a list")
        nodes = []
    elif not nodes:
        v.add("/nodes", "empty_workflow", "the workflow has no nodes")
    if edges is None:
        edges = []
    elif not isinstance(edges, list):
        v.add("/edges", "not_a_list", "edges must be a list")
        edges = []
    v.settings(definition.get("settings"))
    if len(nodes) > max_nodes:
        v.add("/nodes", "too_many_nodes", f"{len(nodes)} nodes; at most {max_nodes} are allowed")
        return v.errors
    if len(edges) > max_nodes * EDGES_PER_NODE_CAP:
        v.add("/edges", "too_many_edges", f"{len(edges)} edges; at most {max_nodes * EDGES_PER_NODE_CAP} are allowed")
        return v.errors
    if _depth_exceeds(definition, MAX_DEPTH):
        v.add("", "too_deeply_nested", f"the definition nests objects or lists deeper than {MAX_DEPTH} levels")
        return v.errors
    first_index: dict[str, int] = {}
    for i, raw in enumerate(nodes):
        v.node(i, raw, first_index)
    seen_edges: dict[str, int] = {}
    for j, raw in enumerate(edges):
        v.edge(j, raw, seen_edges)
    v.graph()
    v.secrets()
    return v.errors
