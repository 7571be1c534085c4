"""The workflow REST API against PostgreSQL: create, read, save, versions, archive, validate."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.workflows.conftest import BUILDER_DOCUMENTS, load_fixture
from workflows.definition import checksum, normalize
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db

RESPONSE_KEYS = {"id", "name", "description", "tags", "version", "definition", "normalized", "created_at", "updated_at"}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def create(api: APIClient, definition: Any, name: str = "wf", **extra: Any) -> Any:
    return api.post("/api/workflows/", {"name": name, "definition": definition, **extra}, format="json")


# --- the three builder documents -------------------------------------------------


@pytest.mark.parametrize("name", BUILDER_DOCUMENTS)
def test_builder_document_accepted_stored_returned_unchanged(api: APIClient, user: Any, name: str) -> None:
    submitted = load_fixture(name)
    resp = create(api, submitted, name=name, description="from the builder", tags=["demo"])
    assert resp.status_code == 201, resp.json()
    body = resp.json()
    assert set(body) == RESPONSE_KEYS
    assert body["version"] == 1 and body["tags"] == ["demo"] and body["description"] == "from the builder"
    # Returned unchanged: equal in JSON terms (objects are unordered; PostgreSQL's
    # jsonb does not keep key order, so compare canonical serialisations).
    assert body["definition"] == submitted
    assert canonical_json(body["definition"]) == canonical_json(submitted)
    assert body["normalized"] == normalize(submitted)
    # Stored: the version row keeps both forms and the checksum of the canonical one.
    version = WorkflowVersion.objects.get(workflow_id=body["id"])
    assert version.submitted == submitted and version.definition == normalize(submitted)
    assert version.checksum == checksum(normalize(submitted)) and version.created_by == user
    # And a later read returns the same document.
    again = api.get(f"/api/workflows/{body['id']}/").json()
    assert canonical_json(again["definition"]) == canonical_json(submitted)
    assert again["normalized"] == body["normalized"]


def test_linear_chain_normalised(api: APIClient) -> None:
    body = create(api, load_fixture("linear_chain")).json()
    norm = body["normalized"]
    assert [n["type"] for n in norm["nodes"]] == ["MANUAL", "HTTP_REQUEST", "CALCULATOR", "DELAY", "EMAIL"]
    assert [(e["source"], e["target"]) for e in norm["edges"]] == [
        ("start", "fetch"),
        ("fetch", "total"),
        ("total", "wait"),
        ("wait", "mail"),
    ]
    assert norm["settings"] == {"timeout_s": 3600, "max_parallel_nodes": 16}
    assert norm["nodes"][1]["position"] == {"x": 250, "y": 0}


def test_health_monitor_normalised(api: APIClient) -> None:
    submitted = load_fixture("health_monitor")
    norm = create(api, submitted).json()["normalized"]
    assert [n["type"] for n in norm["nodes"]] == ["SCHEDULE", "HTTP_REQUEST", "CONDITION", "EMAIL", "EMAIL"]
    # the lower-case blockType is canonicalised too; UI-only fields are kept untouched
    assert norm["nodes"][4]["data"]["blockType"] == "EMAIL"
    for key in ("position", "selected", "dragging", "measured"):
        assert norm["nodes"][1][key] == submitted["nodes"][1][key]
    assert norm["nodes"][1]["data"]["iconName"] == "Globe"
    assert norm["viewport"] == submitted["viewport"]
    # null handles are dropped from the canonical edges; the condition's handles stay
    assert "sourceHandle" not in norm["edges"][0]
    assert [e.get("sourceHandle") for e in norm["edges"][2:]] == ["true", "false"]


def test_approval_flow_normalised(api: APIClient) -> None:
    norm = create(api, load_fixture("approval_flow")).json()["normalized"]
    assert [n["type"] for n in norm["nodes"]] == ["WEBHOOK", "CONDITION", "NOTIFICATION", "DATA_TRANSFORM", "EMAIL"]
    into_receipt = sorted(e["source"] for e in norm["edges"] if e["target"] == "receipt")
    assert into_receipt == ["auto", "notify"]
    assert norm["edges"][3]["data"] == {"condition": "{{ output.delivered == true }}"}


# --- create: errors -----------------------------------------------------------------


def test_create_invalid_definition_points_into_the_body_and_stores_nothing(api: APIClient) -> None:
    d = load_fixture("health_monitor")
    d["nodes"][1]["data"]["config"]["url"] = 5
    d["edges"][2]["sourceHandle"] = "up"
    resp = create(api, d)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "invalid_definition"
    assert sorted((x["path"], x["code"]) for x in err["details"]) == [
        ("/definition/edges/2/sourceHandle", "invalid_handle"),
        ("/definition/nodes/1/data/config/url", "invalid_config"),
    ]
    assert Workflow.objects.count() == 0 and WorkflowVersion.objects.count() == 0


def test_create_envelope_errors(api: APIClient) -> None:
    resp = api.post("/api/workflows/", {"description": 3, "tags": "x"}, format="json")
    assert resp.status_code == 400
    paths = {(d["path"], d["code"]) for d in resp.json()["error"]["details"]}
    assert ("/name", "required") in paths and ("/definition", "required") in paths
    assert ("/tags", "not_a_list") in paths


def test_create_definition_too_large(api: APIClient, settings: Any) -> None:
    settings.ZYRA_MAX_DEFINITION_BYTES = 2000
    d = load_fixture("linear_chain")
    d["nodes"][0]["data"]["label"] = "x" * 3000
    resp = create(api, d)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "definition_too_large"
    assert resp.json()["error"]["details"][0]["path"] == "/definition"
    assert Workflow.objects.count() == 0


def test_ten_problems_in_one_response(api: APIClient) -> None:
    d = load_fixture("approval_flow")
    d["nodes"][0]["data"]["blockType"] = "TELEPORT"  # unknown_type
    d["nodes"][2]["data"]["config"]["url"] = ""  # invalid_config (minLength)
    d["nodes"].append({"id": "notify", "type": "MERGE"})  # duplicate_id
    d["nodes"][4]["data"]["retry"] = {"max_attempts": 99}  # invalid_retry
    d["nodes"][4]["data"]["config"]["body"] = "{{ nodes.nobody.output }}"  # unknown_node_reference
    d["nodes"][2]["data"]["on_error"] = "panic"  # invalid_on_error
    d["edges"][1]["sourceHandle"] = "yes"  # invalid_handle
    d["edges"].append({"source": "receipt", "target": "receipt"})  # self_loop
    d["edges"].append({"source": "receipt", "target": "ghost"})  # dangling_edge
    d["settings"]["timeout_s"] = -3  # invalid_setting
    resp = create(api, d)
    assert resp.status_code == 400
    details = resp.json()["error"]["details"]
    assert len(details) == 10, details
    assert sorted((x["path"], x["code"]) for x in details) == sorted(
        [
            ("/definition/nodes/0/data/blockType", "unknown_type"),
            ("/definition/nodes/2/data/config/url", "invalid_config"),
            ("/definition/nodes/5/id", "duplicate_id"),
            ("/definition/nodes/4/data/retry/max_attempts", "invalid_retry"),
            ("/definition/nodes/4/data/config/body", "unknown_node_reference"),
            ("/definition/nodes/2/data/on_error", "invalid_on_error"),
            ("/definition/edges/1/sourceHandle", "invalid_handle"),
            ("/definition/edges/5", "self_loop"),
            ("/definition/edges/6/target", "dangling_edge"),
            ("/definition/settings/timeout_s", "invalid_setting"),
        ]
    )


# --- validate -------------------------------------------------------------------------


def test_validate_valid_and_invalid(api: APIClient) -> None:
    ok = api.post("/api/workflows/validate/", {"definition": load_fixture("health_monitor")}, format="json")
    assert ok.status_code == 200 and ok.json() == {"valid": True, "errors": []}
    bad = api.post("/api/workflows/validate/", {"definition": {"nodes": []}}, format="json")
    assert bad.status_code == 200
    assert bad.json() == {
        "valid": False,
        "errors": [{"path": "/definition/nodes", "code": "empty_workflow", "message": "the workflow has no nodes"}],
    }
    assert Workflow.objects.count() == 0


def test_validate_requires_definition(api: APIClient) -> None:
    resp = api.post("/api/workflows/validate/", {}, format="json")
    assert resp.status_code == 400
    assert resp.json()["error"]["details"][0]["path"] == "/definition"


def test_validate_unknown_secret_for_this_owner(api: APIClient, user: Any, other_user: Any) -> None:
    from secrets_vault.services import secret_create

    secret_create(owner=user, name="API_KEY", value="s3cret-value")
    secret_create(owner=other_user, name="OTHER_KEY", value="s3cret-value")
    d = load_fixture("linear_chain")
    d["nodes"][1]["data"]["config"]["headers"] = {"Authorization": "Bearer {{ secrets.API_KEY }}", "X-Other": "{{ secrets.OTHER_KEY }}"}
    body = api.post("/api/workflows/validate/", {"definition": d}, format="json").json()
    assert body["errors"] == [
        {
            "path": "/definition/nodes/1/data/config/headers/X-Other",
            "code": "unknown_secret",
            "message": "you have no secret named 'OTHER_KEY'",
        }
    ]


# --- save, versions, archive --------------------------------------------------------------


def test_save_changed_definition_creates_version_unchanged_does_not(api: APIClient) -> None:
    d = load_fixture("linear_chain")
    wid = create(api, d).json()["id"]
    same = api.put(f"/api/workflows/{wid}/", {"name": "renamed", "definition": d}, format="json")
    assert same.status_code == 200 and same.json()["version"] == 1 and same.json()["name"] == "renamed"
    # Spelling the type differently changes nothing canonical: still version 1.
    d_lower = copy.deepcopy(d)
    d_lower["nodes"][0]["type"] = "manual"
    assert api.patch(f"/api/workflows/{wid}/", {"definition": d_lower}, format="json").json()["version"] == 1
    d2 = copy.deepcopy(d)
    d2["nodes"][3]["data"]["config"]["seconds"] = 5
    changed = api.patch(f"/api/workflows/{wid}/", {"definition": d2}, format="json")
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert changed.json()["definition"] == d2
    assert WorkflowVersion.objects.filter(workflow_id=wid).count() == 2
    # PATCH without a definition leaves the version alone
    tagged = api.patch(f"/api/workflows/{wid}/", {"tags": ["a", "b"]}, format="json").json()
    assert tagged["version"] == 2 and tagged["tags"] == ["a", "b"]

    versions = api.get(f"/api/workflows/{wid}/versions/").json()
    assert versions["count"] == 2
    assert [v["number"] for v in versions["results"]] == [2, 1]
    assert versions["results"][0]["created_by"] == "alice"
    v1 = api.get(f"/api/workflows/{wid}/versions/1/").json()
    assert v1["definition"] == d and v1["normalized"] == normalize(d) and v1["number"] == 1
    assert api.get(f"/api/workflows/{wid}/versions/3/").status_code == 404


def test_invalid_save_keeps_what_was_stored(api: APIClient) -> None:
    d = load_fixture("approval_flow")
    wid = create(api, d, name="keep").json()["id"]
    bad = copy.deepcopy(d)
    bad["edges"].append({"source": "receipt", "target": "hook"})
    resp = api.put(f"/api/workflows/{wid}/", {"name": "lost", "definition": bad}, format="json")
    assert resp.status_code == 400
    assert [(x["path"], x["code"]) for x in resp.json()["error"]["details"]] == [("/definition/edges/5", "cycle")]
    after = api.get(f"/api/workflows/{wid}/").json()
    assert after["name"] == "keep" and after["version"] == 1 and after["definition"] == d
    null = api.patch(f"/api/workflows/{wid}/", {"definition": None}, format="json")
    assert null.status_code == 400


def test_put_requires_name_and_definition(api: APIClient) -> None:
    wid = create(api, load_fixture("linear_chain")).json()["id"]
    resp = api.put(f"/api/workflows/{wid}/", {"tags": []}, format="json")
    assert resp.status_code == 400
    assert {d["path"] for d in resp.json()["error"]["details"]} == {"/name", "/definition"}


def test_delete_archives_and_keeps_history(api: APIClient) -> None:
    wid = create(api, load_fixture("linear_chain")).json()["id"]
    assert api.delete(f"/api/workflows/{wid}/").status_code == 204
    wf = Workflow.objects.get(pk=wid)
    assert wf.is_active is False and wf.archived_at is not None
    assert WorkflowVersion.objects.filter(workflow=wf).count() == 1
    assert api.get(f"/api/workflows/{wid}/").status_code == 404
    assert api.get("/api/workflows/").json()["count"] == 0
    assert api.delete(f"/api/workflows/{wid}/").status_code == 404


def test_list_paginates_newest_first(api: APIClient) -> None:
    d = load_fixture("linear_chain")
    ids = [create(api, d, name=f"w{i}").json()["id"] for i in range(5)]
    page1 = api.get("/api/workflows/?page_size=2").json()
    assert page1["count"] == 5 and len(page1["results"]) == 2 and page1["next"]
    assert [w["id"] for w in page1["results"]] == ids[::-1][:2]
    page3 = api.get("/api/workflows/?page_size=2&page=3").json()
    assert [w["id"] for w in page3["results"]] == ids[:1] and page3["next"] is None
    assert api.get("/api/workflows/?page=99").status_code == 404


# --- node types and the definition schema ------------------------------------------------------


def test_node_types_registry(api: APIClient) -> None:
    body = api.get("/api/node-types/").json()
    by_type = {t["type"]: t for t in body}
    for name in (
        "MANUAL",
        "WEBHOOK",
        "SCHEDULE",
        "HTTP_REQUEST",
        "CONDITION",
        "SWITCH",
        "DATA_TRANSFORM",
        "CALCULATOR",
        "DELAY",
        "MERGE",
        "EMAIL",
        "NOTIFICATION",
    ):
        assert name in by_type
    http = by_type["HTTP_REQUEST"]
    assert http["config_schema"]["required"] == ["url"]
    assert http["defaults"]["queue"] == "io" and http["defaults"]["retry"]["max_attempts"] >= 1
    assert http["category"] == "action"


def test_definition_schema_accepts_fixtures_and_rejects_bad_config(api: APIClient) -> None:
    from jsonschema import Draft202012Validator

    schema = api.get("/api/workflows/schema/").json()
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for name in BUILDER_DOCUMENTS:
        assert list(validator.iter_errors(load_fixture(name))) == [], name
    bad = load_fixture("health_monitor")
    del bad["nodes"][1]["data"]["config"]["url"]  # HTTP_REQUEST (via blockType) needs a url
    assert [list(e.absolute_path)[:2] for e in validator.iter_errors(bad)] == [["nodes", 1]]
    unknown = load_fixture("linear_chain")
    unknown["nodes"][0]["type"] = "TELEPORT"
    assert list(validator.iter_errors(unknown))
    assert list(validator.iter_errors({"nodes": []}))


# --- malformed requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "malformed_json"),
        (b'{"name": "x", "definition": NaN}', "application/json", 400, "malformed_json"),
        (b"\xff\xfe", "application/json", 400, "malformed_json"),
        (b"[" * 50_000, "application/json", 400, "too_deeply_nested"),
        (b'{"name": "x", "definition": 1e999}', "application/json", 400, "invalid_number"),
        (b'{"name": "a\\u0000b", "definition": {}}', "application/json", 400, "invalid_string"),
        (b'{"name": "\\ud800", "definition": {}}', "application/json", 400, "invalid_string"),
        (b"name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b"<a/>", "text/xml", 415, "unsupported_media_type"),
        (b"[1, 2]", "application/json", 400, "validation_error"),
        (b'"just a string"', "application/json", 400, "validation_error"),
    ],
)
def test_malformed_bodies_are_4xx(api: APIClient, body: bytes, content_type: str, status: int, code: str) -> None:
    for url in ("/api/workflows/", "/api/workflows/validate/"):
        resp = api.generic("POST", url, body, content_type=content_type)  # type: ignore[arg-type]  # bytes bodies are fine at run time
        assert resp.status_code == status, (url, resp.content[:300])
        assert resp.json()["error"]["code"] == code


def test_deep_definition_is_rejected_with_a_pointer(api: APIClient) -> None:
    deep: Any = 1
    for _ in range(70):
        deep = [deep]
    d = load_fixture("linear_chain")
    d["nodes"][0]["data"]["config"]["sample_input"] = deep
    resp = create(api, d)
    assert resp.status_code == 400
    assert resp.json()["error"]["details"][0]["code"] == "too_deeply_nested"


def test_huge_body_is_413(api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    resp = api.post("/api/workflows/", {"name": "x" * 20_000, "definition": {}}, format="json")
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "body_too_large"


def test_bad_ids_in_urls_are_404(api: APIClient) -> None:
    assert api.get("/api/workflows/not-a-uuid/").status_code == 404
    wid = create(api, load_fixture("linear_chain")).json()["id"]
    assert api.get(f"/api/workflows/{wid}/versions/99999999999999999999999/").status_code == 404


@pytest.mark.parametrize("key", ["\\ud800", "a\\u0000b"])
def test_bad_characters_in_keys_are_400_with_a_renderable_pointer(api: APIClient, key: str) -> None:
    body = b'{"name": "x", "definition": {"nodes": [], "' + key.encode() + b'": 1}}'
    resp = api.generic("POST", "/api/workflows/", body, content_type="application/json")  # type: ignore[arg-type]  # bytes bodies are fine at run time
    assert resp.status_code == 400
    detail = resp.json()["error"]["details"][0]
    assert detail["code"] == "invalid_string" and detail["path"].startswith("/definition/")


def test_openapi_example_definition_is_valid(api: APIClient) -> None:
    from workflows.views import EXAMPLE_DEFINITION

    assert api.post("/api/workflows/validate/", {"definition": EXAMPLE_DEFINITION}, format="json").json() == {"valid": True, "errors": []}
    schema = api.get("/api/schema/?format=json").json()
    create = schema["paths"]["/api/workflows/"]["post"]
    assert "examples" in create["requestBody"]["content"]["application/json"]
    assert {"201", "400", "401", "413", "415"} <= set(create["responses"])
