"""Malformed input never yields a 5xx: hypothesis against create and validate.

Also a consistency property: the validate endpoint and create agree on every
input (valid <=> 201, and the same error list otherwise).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from workflows.models import Workflow
from workflows.registry import node_types

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

# Any text, lone surrogates and NULs included.
text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=30)
huge_text = st.builds(lambda ch, n: ch * n, st.characters(codec=None), st.integers(0, 200_000))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4), max_leaves=20)


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


type_names = st.sampled_from(
    [s.type for s in node_types.all()] + ["custom", "default", "CUSTOM", "http_request", "Condition", "", "TELEPORT"]
)
node_ids = st.one_of(st.sampled_from(["a", "b", "c", "d", "e"]), text, st.integers(), st.none())
nodes = st.fixed_dictionaries(
    {},
    optional={
        "id": node_ids,
        "type": st.one_of(type_names, json_values),
        "position": st.one_of(st.fixed_dictionaries({"x": st.integers(), "y": st.integers()}), json_values),
        "data": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "blockType": st.one_of(type_names, json_values),
                    "config": st.one_of(
                        st.dictionaries(
                            st.sampled_from(["url", "expression", "to", "subject", "seconds", "cases", "cron"]),
                            st.one_of(
                                json_values,
                                st.sampled_from(
                                    ["{{ nodes.a.output.x }}", "{{ 1 + }}", "{{ secrets.K }}", "https://example.com", "{{a-b.c}}"]
                                ),
                            ),
                        ),
                        json_values,
                    ),
                    "retry": json_values,
                    "timeout_s": json_values,
                    "on_error": st.one_of(st.sampled_from(["stop", "continue", "error_branch"]), json_values),
                    "output_schema": json_values,
                    "isEnabled": json_values,
                },
            ),
            json_values,
        ),
    },
)
edges = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(text, json_values),
        "source": node_ids,
        "target": node_ids,
        "sourceHandle": st.one_of(st.sampled_from(["true", "false", "error", "default", None]), json_values),
        "data": st.one_of(st.fixed_dictionaries({"condition": st.one_of(text, json_values)}), json_values),
    },
)


def _with_garbage(base: str, label: Any, extra: Any, x: Any) -> Any:
    """A valid builder document carrying garbage where the builder may put anything."""
    from tests.workflows.conftest import load_fixture

    doc = load_fixture(base)
    doc["nodes"][0]["data"]["label"] = label
    doc["nodes"][0]["position"] = {"x": x, "y": extra}
    doc["viewport"] = extra
    return doc


accepted_with_garbage = st.builds(
    _with_garbage,
    st.sampled_from(["linear_chain", "health_monitor", "approval_flow"]),
    st.one_of(text, huge_text),
    json_values,
    st.one_of(st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=False), st.just(1e308)),
)
definitions = st.one_of(
    accepted_with_garbage,
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "nodes": st.one_of(st.lists(st.one_of(nodes, json_values), max_size=6), json_values),
            "edges": st.one_of(st.lists(st.one_of(edges, json_values), max_size=6), json_values),
            "settings": st.one_of(
                st.fixed_dictionaries(
                    {}, optional={"timeout_s": json_values, "max_parallel_nodes": json_values, "sequential": json_values}
                ),
                json_values,
            ),
            "viewport": json_values,
        },
    ),
    st.integers(1, 3000).map(nested),
    huge_text.map(lambda s: {"nodes": [{"id": s, "type": "MANUAL", "data": {"label": s}}]}),
)


def assert_error_shape(resp: Any) -> None:
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    for d in body["error"]["details"]:
        assert set(d) == {"path", "code", "message"} and (d["path"] == "" or d["path"].startswith("/"))


def post(api: APIClient, url: str, body: Any) -> Any:
    try:
        raw = json.dumps(body).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        raw = b'{"definition": ' + b"[" * 100_000
    return api.generic("POST", url, raw, content_type="application/json")  # type: ignore[arg-type]  # bytes bodies are fine at run time


@FUZZ
@given(definition=definitions, name=st.one_of(text, json_values))
@example(definition=nested(3000), name="deep")
@example(definition=nested(70), name="deep-ish")
@example(definition={"nodes": [{"id": "a\x00", "type": "MANUAL"}]}, name="nul")
@example(definition={"nodes": [{"id": "a", "type": "MANUAL", "data": {"label": "\ud800"}}]}, name="surrogate")
@example(definition={"nodes": [{"id": "a", "type": "MANUAL", "position": {"x": 10**400}}]}, name="bigint")
@example(definition={"nodes": [{"id": "a", "type": "MANUAL", "data": {"label": "x" * 3_000_000}}]}, name="huge")
@example(definition={"nodes": [{"id": "a", "type": "MANUAL"}]}, name="\x00")
@example(definition={"nodes": [{"id": "a", "type": "MANUAL"}]}, name="\udfff")
def test_create_and_validate_never_5xx_and_agree(api: APIClient, definition: Any, name: Any) -> None:
    check = post(api, "/api/workflows/validate/", {"definition": definition})
    assert check.status_code < 500, check.content[:500]
    created = post(api, "/api/workflows/", {"name": name, "definition": definition})
    assert created.status_code < 500, created.content[:500]
    if created.status_code == 201:
        assert created.json()["definition"] == definition
        assert check.json()["valid"] is True
    else:
        assert_error_shape(created)
    if check.status_code == 200:
        # validate and create judge the definition the same way
        if check.json()["valid"]:
            if created.status_code != 201:  # then only the envelope (name) was wrong
                assert not any(d["path"].startswith("/definition") for d in created.json()["error"]["details"]), created.json()
        else:
            assert created.status_code in (400, 413)
            if created.json()["error"]["code"] == "invalid_definition":
                assert created.json()["error"]["details"] == check.json()["errors"]
    else:
        assert_error_shape(check)


@FUZZ
@given(
    body=st.binary(max_size=2000),
    content_type=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
            "application/json; charset=latin-1",
        ]
    ),
)
def test_arbitrary_bytes_never_5xx(api: APIClient, body: bytes, content_type: str) -> None:
    for url in ("/api/workflows/", "/api/workflows/validate/"):
        resp = api.generic("POST", url, body, content_type=content_type)  # type: ignore[arg-type]  # bytes bodies are fine at run time
        assert 400 <= resp.status_code < 500, (url, resp.status_code, resp.content[:300])
        assert_error_shape(resp)
    assert Workflow.objects.count() == 0


@FUZZ
@given(body=json_values)
def test_arbitrary_json_update_never_5xx(api: APIClient, body: Any) -> None:
    from tests.workflows.conftest import load_fixture

    wid = api.post("/api/workflows/", {"name": "w", "definition": load_fixture("linear_chain")}, format="json").json()["id"]
    for method in ("PUT", "PATCH"):
        try:
            raw = json.dumps(body).encode()
        except ValueError:
            continue
        resp = api.generic(method, f"/api/workflows/{wid}/", raw, content_type="application/json")  # type: ignore[arg-type]  # bytes bodies are fine at run time
        assert resp.status_code < 500, resp.content[:300]
    # whatever happened, the stored workflow is still readable and valid
    stored = api.get(f"/api/workflows/{wid}/")
    assert stored.status_code == 200 and stored.json()["version"] >= 1
