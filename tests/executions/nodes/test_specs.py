"""The registered specs of the core node types: schemas valid, defaults as designed, and
every config the schema accepts here is one the handler runs (and vice versa for rejects)."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from executions.nodes.base import Defer, NodeError, handlers
from tests.executions.nodes.conftest import make_ctx
from workflows.registry import node_types

CORE = ["MANUAL", "WEBHOOK", "SCHEDULE", "CONDITION", "SWITCH", "DATA_TRANSFORM", "CALCULATOR", "DELAY", "MERGE"]


@pytest.mark.parametrize("type_name", CORE)
def test_spec_is_registered_with_valid_schemas_and_a_handler(type_name: str) -> None:
    spec = node_types.get(type_name)
    Draft202012Validator.check_schema(spec.config_schema)
    Draft202012Validator.check_schema(spec.output_schema)
    assert spec.config_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert handlers.has(type_name)
    assert spec.queue == ("io" if type_name == "DELAY" else "cpu")
    assert spec.is_trigger is (type_name in {"MANUAL", "WEBHOOK", "SCHEDULE"})
    assert spec.category == ("trigger" if spec.is_trigger else spec.category)
    assert spec.timeout_s > 0 and spec.retry.max_attempts >= 1


def test_routing_handles() -> None:
    assert node_types.get("CONDITION").handles == ("true", "false", "error")
    assert node_types.get("SWITCH").handles is None


# (type, config, input) the schema accepts and the handler runs.
VALID: list[tuple[str, dict[str, Any], Any]] = [
    ("MANUAL", {}, None),
    ("MANUAL", {"input_schema": {"type": "object"}, "sample_input": {"a": 1}, "uiColor": "red"}, None),
    ("WEBHOOK", {"method": "POST", "secret_name": "HOOK_KEY"}, None),
    ("SCHEDULE", {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"}, None),
    ("SCHEDULE", {"interval_s": 300}, None),
    ("CONDITION", {"expression": "{{ input.ok }}"}, None),
    (
        "CONDITION",
        {"conditions": [{"id": "c1", "leftValue": 1, "operator": ">", "rightValue": 0, "dataType": "number"}], "combinator": "or"},
        None,
    ),
    ("CONDITION", {"leftValue": "a", "operator": "isNotEmpty"}, None),
    (
        "SWITCH",
        {
            "value": "b",
            "cases": [{"handle": "a", "equals": "a"}, {"handle": "b", "operator": "starts_with", "value": "b"}],
            "default_handle": "other",
        },
        None,
    ),
    ("DATA_TRANSFORM", {"source": [{"a": 1}], "operations": [{"op": "map", "fields": {"x": "a"}}, {"op": "limit", "count": 1}]}, None),
    ("DATA_TRANSFORM", {"operations": [{"op": "aggregate", "fn": "count"}]}, [1, 2]),
    ("CALCULATOR", {"expression": "a * 2", "variables": {"a": 2}, "precision": 2}, None),
    ("CALCULATOR", {"operation": "fibonacci", "n": 10}, None),
    ("CALCULATOR", {"operation": "add", "a": "{{ input.a }}", "b": 1}, None),
    ("DELAY", {"seconds": 0}, {"x": 1}),
    ("DELAY", {"duration": 0, "unit": "minutes"}, None),
    ("MERGE", {"mode": "merge"}, None),
    ("MERGE", {}, None),
]

# Configs the schema rejects (the validator reports them before any run).
INVALID: list[tuple[str, dict[str, Any]]] = [
    ("SCHEDULE", {"cron": "* * * * *", "interval_s": 60}),
    ("SCHEDULE", {"interval_s": 0}),
    ("CONDITION", {}),
    ("CONDITION", {"expression": "{{ x }}", "extra": 1}),
    ("CONDITION", {"conditions": [{"leftValue": 1, "operator": "between"}]}),
    ("CONDITION", {"conditions": []}),
    ("SWITCH", {"value": 1}),
    ("SWITCH", {"cases": [{"handle": "error", "equals": 1}]}),
    ("SWITCH", {"cases": [{"handle": "a"}]}),
    ("DATA_TRANSFORM", {"operations": [{"op": "eval", "code": "1"}]}),
    ("DATA_TRANSFORM", {"operations": [{"op": "map"}]}),
    ("DATA_TRANSFORM", {"operations": [{"op": "aggregate", "fn": "median"}]}),
    ("DATA_TRANSFORM", {}),
    ("CALCULATOR", {}),
    ("CALCULATOR", {"operation": "sqrt", "a": 1}),
    ("CALCULATOR", {"expression": "1", "variables": {"not valid": 1}}),
    ("DELAY", {}),
    ("DELAY", {"seconds": -1}),
    ("DELAY", {"seconds": 1, "until": "2030-01-01T00:00:00Z"}),
    ("DELAY", {"duration": 1, "unit": "weeks"}),
    ("MERGE", {"mode": "zip"}),
]


@pytest.mark.parametrize(("type_name", "config", "data_in"), VALID)
def test_valid_configs_pass_the_schema_and_run(type_name: str, config: dict[str, Any], data_in: Any) -> None:
    spec = node_types.get(type_name)
    assert list(Draft202012Validator(spec.config_schema).iter_errors(config)) == []
    rendered = {**config, "a": 3} if config.get("a") == "{{ input.a }}" else config
    if type_name == "CONDITION" and "expression" in config:
        rendered = {"expression": True}
    ctx = make_ctx(type_name, rendered, input=data_in, raw_config=config, inputs_by_node={"p": {"k": 1}})
    try:
        output = handlers.get(type_name).run(ctx)
    except Defer:  # pragma: no cover - the DELAY cases above are zero-length
        raise
    errors = list(Draft202012Validator(spec.output_schema).iter_errors(output))
    assert errors == [], [e.message for e in errors]


@pytest.mark.parametrize(("type_name", "config"), INVALID)
def test_invalid_configs_are_rejected_by_schema_and_handler(type_name: str, config: dict[str, Any]) -> None:
    spec = node_types.get(type_name)
    assert list(Draft202012Validator(spec.config_schema).iter_errors(config)) != []
    if type_name == "SCHEDULE":
        return  # cron/interval shape is the scheduler's; the trigger itself just emits the input
    if "extra" in config:
        return  # unknown keys: the schema is strict, the handler ignores them
    with pytest.raises(NodeError) as info:
        handlers.get(type_name).run(make_ctx(type_name, config))
    assert info.value.code == "validation"
