"""Schemathesis against the OpenAPI schema of the workflow endpoints.

Positive and negative cases for every workflow operation, sent through the
real WSGI application (same process, same test transaction): no 5xx, and
every response conforms to the documented status codes, content type and
body schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.workflows.conftest import load_fixture

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
NOTHING_TO_NEGATE = {"GET /api/node-types/", "GET /api/workflows/schema/"}
WORKFLOW_PATHS = r"^/api/(workflows/$|workflows/validate/|workflows/schema/|workflows/\{id\}/|node-types/)"


@pytest.fixture
def openapi(api: APIClient) -> Any:
    raw = api.get("/api/schema/?format=json")
    assert raw.status_code == 200
    schema = schemathesis.openapi.from_dict(json.loads(raw.content))
    schema.app = get_wsgi_application()
    return schema.include(path_regex=WORKFLOW_PATHS)


@contextmanager
def in_test_transaction() -> Iterator[None]:
    """Requests go through the WSGI handler in this thread, inside this test's
    transaction; like Django's test client, keep the handler from closing the
    connection at the end of each request. (Do not use the test client inside:
    it reconnects these signals.)"""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_workflow_operations_are_documented(openapi: Any) -> None:
    labels = {op.ok().label for op in openapi.get_all_operations()}
    assert labels == {
        "GET /api/workflows/",
        "POST /api/workflows/",
        "GET /api/workflows/{id}/",
        "PUT /api/workflows/{id}/",
        "PATCH /api/workflows/{id}/",
        "DELETE /api/workflows/{id}/",
        "GET /api/workflows/{id}/versions/",
        "GET /api/workflows/{id}/versions/{number}/",
        "POST /api/workflows/validate/",
        "GET /api/workflows/schema/",
        "GET /api/node-types/",
    }


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_workflow_endpoints_conform_and_never_5xx(openapi: Any, user: Any, api: APIClient, mode: GenerationMode) -> None:
    token = Token.objects.get(user=user).key
    headers = {"Authorization": f"Token {token}"}
    existing = api.post("/api/workflows/", {"name": "seed", "definition": load_fixture("health_monitor")}, format="json").json()["id"]
    seen: dict[str, set[int]] = {}
    with in_test_transaction():
        _run_all(openapi, mode, headers, existing, seen)
    assert set(seen) >= {"POST /api/workflows/validate/", "GET /api/workflows/{id}/", "POST /api/workflows/"}
    assert all(code < 500 for codes in seen.values() for code in codes)
    if mode is GenerationMode.POSITIVE:
        assert 200 in seen["POST /api/workflows/validate/"]
        assert 200 in seen["GET /api/workflows/{id}/"]
        assert 201 in seen["POST /api/workflows/"]
        assert 200 in seen["PUT /api/workflows/{id}/"]


def _run_all(openapi: Any, mode: GenerationMode, headers: dict[str, str], existing: str, seen: dict[str, set[int]]) -> None:
    for result in openapi.get_all_operations():
        operation = result.ok()
        strategies = [operation.as_strategy(generation_mode=mode)]
        if "{id}" in operation.path and mode is GenerationMode.POSITIVE:
            # Also aim at a workflow that exists, so the success paths are exercised.
            strategies.append(operation.as_strategy(generation_mode=mode, path_parameters={"id": existing, "number": 1}))
        if mode is GenerationMode.POSITIVE and operation.method.upper() in {"POST", "PUT", "PATCH"}:
            # A real builder document, so the success responses are checked too.
            body = {"name": "contract", "definition": load_fixture("approval_flow")}
            strategies.append(
                operation.as_strategy(generation_mode=mode, body=body, media_type="application/json", path_parameters={"id": existing})
            )

        for strategy in strategies:

            @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
            @given(case=strategy)
            def run(case: Any) -> None:
                response = case.call(headers=headers)
                seen.setdefault(case.operation.label, set()).add(response.status_code)
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                # Negative mode: an operation with no parameters and no body has
                # nothing to break.
                assert mode is GenerationMode.NEGATIVE and operation.label in NOTHING_TO_NEGATE, operation.label
