"""NOTIFICATION: generic webhook, Slack- and Discord-style posts against a real local server."""

from __future__ import annotations

from typing import Any

import pytest

from executions.nodes.base import NodeError, handlers
from tests.executions.nodes.conftest import make_ctx
from tests.support.servers import LocalServer

pytestmark = pytest.mark.django_db


def run(config: dict[str, Any]) -> Any:
    return handlers.get("NOTIFICATION").run(make_ctx("NOTIFICATION", config))


def test_slack_style(server: LocalServer) -> None:
    server.route("/slack", lambda req: (200, {"Content-Type": "text/plain"}, b"ok"))
    out = run({"url": server.url("/slack"), "style": "slack", "message": "deploy done", "username": "zyra"})
    assert out == {"delivered": True, "status": 200, "style": "slack", "response": "ok"}
    req = server.requests[0]
    assert req.method == "POST" and req.json() == {"text": "deploy done", "username": "zyra"}
    assert req.headers["idempotency-key"] == "run-1:n1:1"


def test_discord_style(server: LocalServer) -> None:
    server.route("/discord", lambda req: (204, {}, b""))
    out = run({"url": server.url("/discord"), "style": "discord", "message": "x" * 2500})
    assert out["delivered"] is True and out["status"] == 204
    assert server.requests[0].json() == {"content": "x" * 2000}


def test_generic_webhook_payload(server: LocalServer) -> None:
    out = run({"url": server.url("/hook"), "payload": {"event": "order", "id": 7}, "message": "hi", "headers": {"X-Signature": "abc"}})
    assert out["status"] == 200
    req = server.requests[0]
    assert req.json() == {"event": "order", "id": 7, "message": "hi"}
    assert req.headers["x-signature"] == "abc"


def test_receiver_errors_fail_the_node(server: LocalServer) -> None:
    server.responses("/hook", [(410, {"error": "gone"})])
    with pytest.raises(NodeError) as info:
        run({"url": server.url("/hook"), "message": "hi"})
    assert info.value.code == "http_4xx"


def test_a_slack_post_needs_a_message(server: LocalServer) -> None:
    with pytest.raises(NodeError) as info:
        run({"url": server.url("/slack"), "style": "slack", "payload": {"a": 1}})
    assert info.value.code == "config" and info.value.details == {"path": "/data/config/message"}
    assert server.requests == []
