"""Every validation rule: its JSON pointer (into the submitted document) and its code.

Pure: no database.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.workflows.conftest import BUILDER_DOCUMENTS, load_fixture
from workflows.validation import template_syntax_error, validate_definition


def node(node_id: str, type_: str = "MANUAL", config: dict[str, Any] | None = None, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "data": {"config": config if config is not None else {}, **data}}


def http(node_id: str, url: str = "https://example.com/", **data: Any) -> dict[str, Any]:
    return node(node_id, "HTTP_REQUEST", {"url": url}, **data)


def edge(source: str, target: str, handle: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f"{source}->{target}:{handle}", "source": source, "target": target, **extra}
    if handle is not None:
        out["sourceHandle"] = handle
    return out


def base() -> dict[str, Any]:
    """start -> fetch -> check -(true)-> ok / -(false)-> bad"""
    return {
        "nodes": [
            node("start"),
            http("fetch"),
            node("check", "CONDITION", {"expression": "{{ nodes.fetch.output.status == 200 }}"}),
            node("ok", "EMAIL", {"to": "a@example.com", "subject": "up"}),
            node("bad", "EMAIL", {"to": "a@example.com", "subject": "down {{ nodes.fetch.output.status }}"}),
        ],
        "edges": [edge("start", "fetch"), edge("fetch", "check"), edge("check", "ok", "true"), edge("check", "bad", "false")],
        "settings": {"timeout_s": 60, "max_parallel_nodes": 4, "sequential": False},
    }


def codes(definition: Any, **kwargs: Any) -> list[tuple[str, str]]:
    return [(e.path, e.code) for e in validate_definition(definition, **kwargs)]


def test_base_definition_is_valid() -> None:
    assert validate_definition(base()) == []


@pytest.mark.parametrize("name", BUILDER_DOCUMENTS)
def test_builder_documents_are_valid(name: str) -> None:
    assert validate_definition(load_fixture(name)) == []


# --- structure ---------------------------------------------------------------


@pytest.mark.parametrize("value", [None, [], "nodes", 3, True])
def test_not_an_object(value: Any) -> None:
    assert codes(value) == [("", "not_an_object")]


def test_nodes_not_a_list() -> None:
    assert codes({"nodes": {"a": 1}, "edges": []}) == [("/nodes", "not_a_list")]


def test_edges_not_a_list() -> None:
    d = base()
    d["edges"] = "a->b"
    assert ("/edges", "not_a_list") in codes(d)


@pytest.mark.parametrize("definition", [{"nodes": []}, {}, {"nodes": None, "edges": []}])
def test_empty_workflow(definition: dict[str, Any]) -> None:
    assert codes(definition) == [("/nodes", "empty_workflow")]


def test_regression_blocktype_nodes_are_not_an_empty_workflow() -> None:
    """The old engine rejected this save with "must have at least one block":
    it counted only nodes whose ``type`` was a block type, and the builder
    sends ``type: "custom"`` with the block type in ``data.blockType``."""
    d = {
        "nodes": [
            {"id": "t", "type": "custom", "position": {"x": 0, "y": 0}, "data": {"blockType": "MANUAL", "config": {}}},
            {"id": "c", "type": "custom", "data": {"blockType": "calculator", "config": {"expression": "1 + 1"}}},
        ],
        "edges": [{"id": "e", "source": "t", "target": "c"}],
    }
    errors = validate_definition(d)
    assert errors == []
    assert "empty_workflow" not in [e.code for e in validate_definition(load_fixture("health_monitor"))]


def test_too_many_nodes() -> None:
    d = {"nodes": [node(f"n{i}") for i in range(6)], "edges": []}
    assert codes(d, max_nodes=5) == [("/nodes", "too_many_nodes")]
    assert codes(d, max_nodes=6) == []


def test_too_deeply_nested() -> None:
    deep: Any = "x"
    for _ in range(80):
        deep = {"a": deep}
    d = base()
    d["nodes"][0]["data"]["config"]["sample_input"] = deep
    assert codes(d) == [("", "too_deeply_nested")]


# --- nodes -------------------------------------------------------------------


def test_node_not_an_object() -> None:
    d = base()
    d["nodes"].append("oops")
    assert codes(d) == [("/nodes/5", "invalid_node")]


def test_missing_id() -> None:
    d = base()
    del d["nodes"][0]["id"]
    assert ("/nodes/0/id", "missing_id") in codes(d)


@pytest.mark.parametrize("bad", [7, "", "   ", ["x"]])
def test_invalid_id(bad: Any) -> None:
    d = base()
    d["nodes"].append({"id": bad, "type": "MANUAL"})
    assert codes(d) == [("/nodes/5/id", "invalid_id")]


def test_duplicate_id() -> None:
    d = base()
    d["nodes"].append(node("fetch"))
    errors = validate_definition(d)
    assert [(e.path, e.code) for e in errors] == [("/nodes/5/id", "duplicate_id")]
    assert "/nodes/1" in errors[0].message


def test_unknown_type_in_type() -> None:
    d = base()
    d["nodes"][1]["type"] = "TELEPORT"
    errors = validate_definition(d)
    assert ("/nodes/1/type", "unknown_type") in [(e.path, e.code) for e in errors]


def test_unknown_type_in_blocktype() -> None:
    d = base()
    d["nodes"][1] = {"id": "fetch", "type": "custom", "data": {"blockType": "TELEPORT", "config": {}}}
    assert ("/nodes/1/data/blockType", "unknown_type") in codes(d)


def test_missing_type() -> None:
    d = base()
    d["nodes"][0] = {"id": "start", "type": "custom", "data": {"label": "?"}}
    d["nodes"].append({"id": "x"})
    assert codes(d) == [("/nodes/0/data/blockType", "missing_type"), ("/nodes/5/type", "missing_type")]


@pytest.mark.parametrize("spelling", ["http_request", "Http-Request", "HTTP_REQUEST"])
def test_type_spellings_accepted(spelling: str) -> None:
    d = base()
    d["nodes"][1]["type"] = spelling
    assert codes(d) == []


def test_data_not_an_object() -> None:
    d = base()
    d["nodes"][0]["data"] = "hello"
    assert codes(d) == [("/nodes/0/data", "invalid_data")]


def test_config_not_an_object() -> None:
    d = base()
    d["nodes"][1]["data"]["config"] = ["https://example.com"]
    assert codes(d) == [("/nodes/1/data/config", "invalid_config")]


def test_config_schema_violation_points_into_the_config() -> None:
    d = base()
    d["nodes"][1]["data"]["config"] = {"url": 12, "method": "FETCH"}
    assert sorted(codes(d)) == [("/nodes/1/data/config/method", "invalid_config"), ("/nodes/1/data/config/url", "invalid_config")]


def test_config_missing_required_field_points_at_the_field() -> None:
    d = base()
    d["nodes"][3]["data"]["config"] = {"to": "a@example.com"}
    assert codes(d) == [("/nodes/3/data/config/subject", "invalid_config")]


def test_config_of_a_blocktype_node_is_checked() -> None:
    d = load_fixture("health_monitor")
    del d["nodes"][1]["data"]["config"]["url"]
    assert codes(d) == [("/nodes/1/data/config/url", "invalid_config")]


def test_template_string_may_stand_for_a_number() -> None:
    d = base()
    d["nodes"][1]["data"]["config"]["timeout_s"] = "{{ input.timeout }}"
    assert codes(d) == []


def test_type_specific_config_check() -> None:
    d = load_fixture("health_monitor")
    d["nodes"][0]["data"]["config"]["cron"] = "every blue moon"
    assert codes(d) == [("/nodes/0/data/config/cron", "invalid_cron")]


@pytest.mark.parametrize(
    ("retry", "path"),
    [
        ({"max_attempts": 0}, "/nodes/1/data/retry/max_attempts"),
        ({"max_attempts": 21}, "/nodes/1/data/retry/max_attempts"),
        ({"max_attempts": 2.5}, "/nodes/1/data/retry/max_attempts"),
        ({"max_attempts": True}, "/nodes/1/data/retry/max_attempts"),
        ({"backoff_s": -1}, "/nodes/1/data/retry/backoff_s"),
        ({"max_backoff_s": "10"}, "/nodes/1/data/retry/max_backoff_s"),
        ("3 times", "/nodes/1/data/retry"),
    ],
)
def test_invalid_retry(retry: Any, path: str) -> None:
    d = base()
    d["nodes"][1]["data"]["retry"] = retry
    assert codes(d) == [(path, "invalid_retry")]


def test_valid_retry() -> None:
    d = base()
    d["nodes"][1]["data"]["retry"] = {"max_attempts": 20, "backoff_s": 0, "max_backoff_s": 0}
    assert codes(d) == []


@pytest.mark.parametrize("timeout", [0, -5, "30", 3601, False])
def test_invalid_node_timeout(timeout: Any) -> None:
    d = base()
    d["nodes"][1]["data"]["timeout_s"] = timeout
    assert codes(d) == [("/nodes/1/data/timeout_s", "invalid_timeout")]


def test_node_timeout_at_the_cap_is_valid(settings: Any) -> None:
    d = base()
    d["nodes"][1]["data"]["timeout_s"] = settings.ZYRA_MAX_NODE_TIMEOUT_S
    assert codes(d) == []


def test_invalid_on_error() -> None:
    d = base()
    d["nodes"][1]["data"]["on_error"] = "explode"
    assert codes(d) == [("/nodes/1/data/on_error", "invalid_on_error")]


def test_invalid_output_schema() -> None:
    d = base()
    d["nodes"][1]["data"]["output_schema"] = {"type": "nonsense"}
    d["nodes"][3]["data"]["output_schema"] = "object"
    assert codes(d) == [
        ("/nodes/1/data/output_schema/type", "invalid_output_schema"),
        ("/nodes/3/data/output_schema", "invalid_output_schema"),
    ]


def test_valid_output_schema() -> None:
    d = base()
    d["nodes"][1]["data"]["output_schema"] = {"type": "object", "required": ["status"]}
    assert codes(d) == []


def test_is_enabled_must_be_boolean() -> None:
    d = base()
    d["nodes"][1]["data"]["isEnabled"] = "no"
    assert codes(d) == [("/nodes/1/data/isEnabled", "invalid_field")]


# --- edges -------------------------------------------------------------------


def test_edge_not_an_object() -> None:
    d = base()
    d["edges"].append(["start", "fetch"])
    assert codes(d) == [("/edges/4", "invalid_edge")]


def test_edge_without_source() -> None:
    d = base()
    d["edges"].append({"id": "x", "target": "fetch"})
    assert codes(d) == [("/edges/4/source", "invalid_edge")]


def test_dangling_edge() -> None:
    d = base()
    d["edges"].append(edge("fetch", "ghost"))
    d["edges"].append(edge("phantom", "ok"))
    assert codes(d) == [("/edges/4/target", "dangling_edge"), ("/edges/5/source", "dangling_edge")]


def test_duplicate_edge_id() -> None:
    d = base()
    d["edges"].append({"id": d["edges"][0]["id"], "source": "start", "target": "ok"})
    assert codes(d) == [("/edges/4/id", "duplicate_edge_id")]


def test_self_loop() -> None:
    d = base()
    d["edges"].append(edge("fetch", "fetch"))
    assert codes(d) == [("/edges/4", "self_loop")]


def test_cycle_names_its_nodes() -> None:
    d = base()
    d["nodes"].append(node("a", "DELAY", {"seconds": 1}))
    d["edges"].append(edge("ok", "a"))
    d["edges"].append(edge("a", "fetch"))
    errors = validate_definition(d)
    assert [(e.path, e.code) for e in errors] == [("/edges/5", "cycle")]
    for name in ("fetch", "check", "ok", "a"):
        assert name in errors[0].message
    assert "start" not in errors[0].message


def test_two_separate_cycles_are_two_errors() -> None:
    d = {
        "nodes": [node(n, "DELAY", {"seconds": 1}) for n in "abcd"],
        "edges": [edge("a", "b"), edge("b", "a"), edge("c", "d"), edge("d", "c")],
    }
    errors = validate_definition(d)
    assert sorted(e.code for e in errors) == ["cycle", "cycle"]
    paths = {e.path for e in errors}
    assert len(paths) == 2 and paths <= {"/edges/0", "/edges/1", "/edges/2", "/edges/3"}
    assert {"a" in e.message and "b" in e.message for e in errors} == {True, False}


@pytest.mark.parametrize("handle", ["yes", None, "error", "TRUE"])
def test_condition_edge_handle(handle: str | None) -> None:
    d = base()
    d["edges"][2] = edge("check", "ok", handle)
    assert codes(d) == [("/edges/2/sourceHandle", "invalid_handle")]


def test_condition_error_handle_allowed_with_error_branch() -> None:
    d = base()
    d["nodes"][2]["data"]["on_error"] = "error_branch"
    d["nodes"].append(node("oops", "EMAIL", {"to": "a@example.com", "subject": "failed"}))
    d["edges"].append(edge("check", "oops", "error"))
    assert codes(d) == []


def switch_definition(handle: str, **config: Any) -> dict[str, Any]:
    cfg = {"value": "{{ input.kind }}", "cases": [{"handle": "a", "equals": "A"}, {"handle": "b", "equals": "B"}], **config}
    return {
        "nodes": [node("start"), node("sw", "SWITCH", cfg), node("x", "DELAY", {"seconds": 1})],
        "edges": [edge("start", "sw"), edge("sw", "x", handle)],
    }


@pytest.mark.parametrize("handle", ["a", "b", "default"])
def test_switch_handles_valid(handle: str) -> None:
    assert codes(switch_definition(handle)) == []


def test_switch_handle_invalid() -> None:
    assert codes(switch_definition("c")) == [("/edges/1/sourceHandle", "invalid_handle")]


def test_switch_custom_default_handle() -> None:
    assert codes(switch_definition("other", default_handle="other")) == []
    assert codes(switch_definition("default", default_handle="other")) == [("/edges/1/sourceHandle", "invalid_handle")]


# --- templates -------------------------------------------------------------------


def test_template_naming_an_unknown_node() -> None:
    d = base()
    d["nodes"][4]["data"]["config"]["body"] = "{{ nodes.nowhere.output.x }}"
    assert codes(d) == [("/nodes/4/data/config/body", "unknown_node_reference")]


def test_template_naming_a_node_that_is_not_upstream() -> None:
    d = base()
    # "ok" is a sibling branch of "bad": it never runs before it.
    d["nodes"][4]["data"]["config"]["body"] = "{{ nodes.ok.output.sent }}"
    # and a node cannot read its own output
    d["nodes"][1]["data"]["config"]["url"] = "https://x/{{ nodes.fetch.output.body }}"
    assert codes(d) == [("/nodes/1/data/config/url", "not_upstream"), ("/nodes/4/data/config/body", "not_upstream")]


def test_legacy_template_form() -> None:
    d = load_fixture("health_monitor")
    d["nodes"][3]["data"]["config"]["body"] = "{{email-down.sent}}"
    assert codes(d) == [("/nodes/3/data/config/body", "not_upstream")]


def test_template_reference_to_distant_ancestor_is_fine() -> None:
    d = base()
    d["nodes"][3]["data"]["config"]["subject"] = "{{ nodes.start.output.x }} / {{ nodes['fetch'].output.status }}"
    assert codes(d) == []


def test_template_in_nested_config_list() -> None:
    d = base()
    d["nodes"][3]["data"]["config"]["to"] = ["a@example.com", "{{ nodes.ghost.output.email }}"]
    assert codes(d) == [("/nodes/3/data/config/to/1", "unknown_node_reference")]


@pytest.mark.parametrize("text", ["{{ nodes.fetch.output. }}", "{{ 1 + }}", "{{ x }}{% if %}", "{{ x | nosuchfilter }}"])
def test_template_syntax(text: str) -> None:
    d = base()
    d["nodes"][4]["data"]["config"]["body"] = text
    assert codes(d) == [("/nodes/4/data/config/body", "template_syntax")]


def test_template_syntax_matches_engine_verdict() -> None:
    from executions.engine import templates

    samples = [
        "{{ nodes.a.output.x }}",
        "plain {{ input.y }} text",
        "{{ 1 + }}",
        "{{ x | nosuchfilter }}",
        "{{ x is nosuchtest }}",
        "{{ a }} {{",
        "{% for x in y %}{{ x }}{% endfor %}",
        "{{fetch-1.body.items[0]}}",
        "{{ nodes['a-b'].output | json }}",
        "{{ a }} {{",
        "{% for x in y %}{{ x.name }}",
        "{% for x in y %}{{ x.name }}{% endfor %}",
        "{# note #}{{ a }}",
        "{{ input.a }}{# unclosed",
    ]
    for text in samples:
        assert (template_syntax_error(text) is None) == (templates.syntax_error(text) is None), text


def test_edge_condition_template() -> None:
    d = base()
    d["edges"][1]["data"] = {"condition": "{{ nodes.fetch.output.status == 200 }}"}
    assert codes(d) == []
    d["edges"][1]["data"] = {"condition": "{{ nodes.ok.output.sent }}"}
    assert codes(d) == [("/edges/1/data/condition", "invalid_condition")]
    # only the source's output is in scope, even for an ancestor
    d["edges"][1]["data"] = {"condition": "{{ nodes.start.output.x }}"}
    assert codes(d) == [("/edges/1/data/condition", "invalid_condition")]
    d["edges"][1]["data"] = {"condition": "{{ nodes.nowhere.output.x }}"}
    assert codes(d) == [("/edges/1/data/condition", "unknown_node_reference")]
    d["edges"][1]["data"] = {"condition": "{{ nodes.fetch.output.status == }}"}
    assert codes(d) == [("/edges/1/data/condition", "template_syntax")]
    d["edges"][1]["data"] = {"condition": "{{ output.status == 200 }}"}  # the source's output
    assert codes(d) == []
    d["edges"][1]["data"] = {"condition": 5}
    assert codes(d) == [("/edges/1/data/condition", "invalid_condition")]


def test_unknown_secret_rule_is_skipped_without_owner() -> None:
    d = base()
    d["nodes"][1]["data"]["config"]["headers"] = {"Authorization": "Bearer {{ secrets.API_KEY }}"}
    assert codes(d) == []


# --- settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_value", "path"),
    [
        ("fast", "/settings"),
        ({"timeout_s": 0}, "/settings/timeout_s"),
        ({"timeout_s": "1h"}, "/settings/timeout_s"),
        ({"max_parallel_nodes": 0}, "/settings/max_parallel_nodes"),
        ({"max_parallel_nodes": 1001}, "/settings/max_parallel_nodes"),
        ({"max_parallel_nodes": 2.0}, "/settings/max_parallel_nodes"),
        ({"sequential": "yes"}, "/settings/sequential"),
    ],
)
def test_invalid_settings(settings_value: Any, path: str) -> None:
    d = base()
    d["settings"] = settings_value
    assert codes(d) == [(path, "invalid_setting")]


# --- all at once ---------------------------------------------------------------------


def test_ten_distinct_problems_in_one_pass() -> None:
    d = copy.deepcopy(base())
    d["nodes"][0]["type"] = "TELEPORT"  # 1 unknown_type
    d["nodes"][1]["data"]["config"]["url"] = 42  # 2 invalid_config
    d["nodes"].append(node("check", "MANUAL"))  # 3 duplicate_id
    d["nodes"][3]["data"]["timeout_s"] = -1  # 4 invalid_timeout
    d["nodes"][4]["data"]["config"]["body"] = "{{ nodes.ghost.output }}"  # 5 unknown_node_reference
    d["edges"].append(edge("fetch", "nowhere"))  # 6 dangling_edge
    d["edges"].append(edge("ok", "ok"))  # 7 self_loop
    d["edges"][2]["sourceHandle"] = "maybe"  # 8 invalid_handle
    d["edges"].append(edge("bad", "fetch"))  # 9 cycle fetch -> check -> bad -> fetch
    d["settings"]["max_parallel_nodes"] = 0  # 10 invalid_setting
    errors = validate_definition(d)
    assert sorted((e.path, e.code) for e in errors) == sorted(
        [
            ("/nodes/0/type", "unknown_type"),
            ("/nodes/1/data/config/url", "invalid_config"),
            ("/nodes/5/id", "duplicate_id"),
            ("/nodes/3/data/timeout_s", "invalid_timeout"),
            ("/nodes/4/data/config/body", "unknown_node_reference"),
            ("/edges/4/target", "dangling_edge"),
            ("/edges/5", "self_loop"),
            ("/edges/2/sourceHandle", "invalid_handle"),
            ("/edges/6", "cycle"),
            ("/settings/max_parallel_nodes", "invalid_setting"),
        ]
    )
    assert all(e.message for e in errors)


def test_template_text_budget(settings: Any) -> None:
    settings.ZYRA_MAX_TEMPLATE_CHARS = 100
    d = base()
    d["nodes"][3]["data"]["config"]["body"] = "{{ nodes.fetch.output.status }}" * 4
    assert codes(d) == [("", "too_much_template_text")]
    settings.ZYRA_MAX_TEMPLATE_CHARS = 1000
    assert codes(d) == []


@pytest.mark.parametrize(
    "hostile",
    [
        "{{" * 4999,  # the engine's regex is quadratic on this
        "{{ " + "a." * 4990 + "b }}",
        "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
        "{{ " + "1+" * 4990 + "1 }}",
    ],
)
def test_hostile_templates_are_cheap_to_reject_or_accept(hostile: str) -> None:
    import time

    d = base()
    d["nodes"][3]["data"]["config"]["body"] = hostile
    started = time.process_time()
    errors = validate_definition(d)
    # Generous bound (a shared 2-core box); the quadratic paths took 8-20 s.
    assert time.process_time() - started < 3.0
    assert all(e.path == "/nodes/3/data/config/body" for e in errors)


def test_loop_variables_are_not_node_references() -> None:
    d = base()
    d["nodes"][4]["data"]["config"]["body"] = "{% for item in nodes.fetch.output.body %}{{ item.name }}{% endfor %}"
    assert codes(d) == []


def test_too_many_edges() -> None:
    d = {"nodes": [node("a"), node("b", "DELAY", {"seconds": 1})], "edges": [edge("a", "b")] * 21}
    assert codes(d, max_nodes=2) == [("/edges", "too_many_edges")]


def test_on_error_camel_case_spelling() -> None:
    d = base()
    d["nodes"][2]["data"]["onError"] = "error_branch"
    d["nodes"].append(node("oops", "EMAIL", {"to": "a@example.com", "subject": "failed"}))
    d["edges"].append(edge("check", "oops", "error"))
    assert codes(d) == []
    d["nodes"][2]["data"]["onError"] = "sometimes"
    assert ("/nodes/2/data/onError", "invalid_on_error") in codes(d)
