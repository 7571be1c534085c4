"""HTTP_REQUEST against a real local server: output shape, classification, idempotency key, guards."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import override_settings

from executions.engine.retry import is_retryable
from executions.models import ServicePolicy
from executions.nodes.base import Defer, NodeError, handlers
from executions.resilience import outbound
from tests.executions.nodes.conftest import make_ctx
from tests.support.servers import LocalServer
from workflows.registry import node_types

pytestmark = pytest.mark.django_db


def run(config: dict[str, Any]) -> Any:
    return handlers.get("HTTP_REQUEST").run(make_ctx("HTTP_REQUEST", config))


def fail(config: dict[str, Any]) -> NodeError:
    with pytest.raises(NodeError) as info:
        run(config)
    return info.value


def test_get_with_query_returns_status_headers_and_parsed_json(server: LocalServer) -> None:
    server.route(
        "/orders", lambda req: (200, {"Content-Type": "application/json", "X-Trace": "t1"}, json.dumps({"id": 7, "items": [1, 2]}).encode())
    )
    out = run({"url": server.url("/orders"), "query": {"page": 2, "tag": ["a", "b"], "flag": True}})
    assert out["status"] == 200
    assert out["body"] == {"id": 7, "items": [1, 2]}
    assert out["headers"]["x-trace"] == "t1"
    assert server.requests[0].path == "/orders?page=2&tag=a&tag=b&flag=true"
    assert "idempotency-key" not in server.requests[0].headers  # GET is not side-effecting
    spec = node_types.get("HTTP_REQUEST")
    import jsonschema

    jsonschema.validate(out, spec.output_schema)


def test_post_sends_json_headers_and_the_idempotency_key(server: LocalServer) -> None:
    out = run({"url": server.url("/hook"), "method": "post", "json": {"a": [1, None]}, "headers": {"X-Api": "k"}})
    assert out["status"] == 200
    req = server.requests[0]
    assert req.method == "POST" and req.json() == {"a": [1, None]}
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-api"] == "k"
    assert req.headers["idempotency-key"] == "run-1:n1:1"


def test_raw_body_and_text_response(server: LocalServer) -> None:
    server.route("/echo", lambda req: (200, {"Content-Type": "text/plain; charset=utf-8"}, req.body.upper()))
    out = run({"url": server.url("/echo"), "method": "PUT", "body": "hello"})
    assert out["body"] == "HELLO"


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (500, "http_5xx", True),
        (503, "http_5xx", True),
        (429, "http_429", True),
        (404, "http_4xx", False),
        (400, "http_4xx", False),
        (401, "auth", False),
        (403, "auth", False),
    ],
)
def test_non_2xx_is_classified(server: LocalServer, status: int, code: str, retryable: bool) -> None:
    server.responses("/x", [(status, {"error": "e"})])
    err = fail({"url": server.url("/x")})
    assert err.code == code and is_retryable(err.code) is retryable
    assert err.details["status"] == status and err.details["body"] == {"error": "e"}


def test_429_carries_retry_after(server: LocalServer) -> None:
    server.route("/slow", lambda req: (429, {"Retry-After": "3"}, b""))
    err = fail({"url": server.url("/slow"), "service": "svc-node-429"})
    assert err.code == "http_429" and err.retry_after_s == 3.0


def test_fail_on_status_false_returns_the_answer(server: LocalServer) -> None:
    server.responses("/x", [(500, {"error": "boom"})])
    out = run({"url": server.url("/x"), "fail_on_status": False})
    assert out["status"] == 500 and out["body"] == {"error": "boom"}


def test_config_errors_point_at_the_field(server: LocalServer) -> None:
    assert fail({"url": ""}).details == {"path": "/data/config/url"}
    assert fail({"url": server.url("/"), "method": "TRACE"}).details == {"path": "/data/config/method"}
    assert fail({"url": server.url("/"), "headers": {"X": "a\r\nInjected: 1"}}).code == "config"
    assert fail({"url": server.url("/"), "timeout_s": -1}).code == "config"
    assert server.requests == []


def test_ssrf_through_the_node(server: LocalServer) -> None:
    with override_settings(ZYRA_HTTP_ALLOWLIST=[]):
        err = fail({"url": f"http://localhost:{server.port}/admin"})
    assert err.code == "ssrf_blocked"
    assert server.requests == []


def test_timeout_from_config(server: LocalServer) -> None:
    server.hang("/hang", 2)
    assert fail({"url": server.url("/hang"), "timeout_s": 0.3}).code == "timeout"


def test_open_breaker_defers_the_node(server: LocalServer) -> None:
    ServicePolicy.objects.create(key="svc-node", minimum_calls=2, failure_rate_threshold=0.5, open_wait_s=60)
    server.responses("/down", [(502, {"e": 1})])
    for _ in range(2):
        assert fail({"url": server.url("/down"), "service": "svc-node"}).code == "http_5xx"
    with pytest.raises(Defer) as info:
        run({"url": server.url("/down"), "service": "svc-node"})
    assert info.value.reason == "circuit_open"
    assert server.count("/down") == 2
    # The key defaults to scheme://host:port; the override kept this URL's default key untouched.
    assert run({"url": server.url("/fine")})["status"] == 200
    assert outbound.service_key(server.url("/x")) == f"http://127.0.0.1:{server.port}"
