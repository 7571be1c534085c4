"""LLM_PROMPT against an OpenAI-compatible local server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from executions.nodes.base import NodeError, handlers
from tests.executions.nodes.conftest import make_ctx
from tests.support.servers import LocalServer, Request

pytestmark = pytest.mark.django_db


@pytest.fixture
def llm(server: LocalServer) -> LocalServer:
    def completions(req: Request) -> tuple[int, dict[str, str], bytes]:
        if req.headers.get("authorization") != "Bearer sk-test":
            return 401, {"Content-Type": "application/json"}, b'{"error": {"message": "bad key"}}'
        body = req.json()
        last = body["messages"][-1]["content"]
        answer = {
            "id": "c1",
            "object": "chat.completion",
            "model": body["model"] + "-2026",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"echo: {last}"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()

    server.route("/v1/chat/completions", completions)
    return server


def run(server: LocalServer, **config: Any) -> Any:
    return handlers.get("LLM_PROMPT").run(make_ctx("LLM_PROMPT", {"base_url": server.url("/v1"), "api_key": "sk-test", **config}))


def test_prompt_with_system_temperature_and_max_tokens(llm: LocalServer) -> None:
    out = run(llm, model="gpt-x", prompt="hello", system="be brief", temperature=0.2, max_tokens=50)
    assert out == {
        "text": "echo: hello",
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        "model": "gpt-x-2026",
        "finish_reason": "stop",
    }
    sent = llm.requests[0].json()
    assert sent == {
        "model": "gpt-x",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        "temperature": 0.2,
        "max_tokens": 50,
    }


def test_messages_form(llm: LocalServer) -> None:
    out = run(
        llm, model="m", messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    )
    assert out["text"] == "echo: c"
    assert len(llm.requests[0].json()["messages"]) == 3


def test_bad_key_is_auth(llm: LocalServer) -> None:
    with pytest.raises(NodeError) as info:
        run(llm, model="m", prompt="x", api_key="wrong")
    assert info.value.code == "auth"


def test_malformed_answer_and_config_errors(server: LocalServer) -> None:
    server.responses("/v1/chat/completions", [(200, {"choices": []})])
    with pytest.raises(NodeError) as info:
        run(server, model="m", prompt="x")
    assert info.value.code == "http_5xx"
    with pytest.raises(NodeError) as info:
        run(server, model="m")
    assert info.value.code == "config"
    with pytest.raises(NodeError) as info:
        run(server, model="m", prompt="x", temperature=3)
    assert info.value.details == {"path": "/data/config/temperature"}
