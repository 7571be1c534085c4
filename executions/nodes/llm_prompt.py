"""LLM_PROMPT handler: one OpenAI-compatible ``POST <base_url>/chat/completions``.

``api_key`` normally comes from ``{{ secrets.NAME }}``; the template engine
registers the value with the run's redactor, so it never reaches the stored
output, events or logs. It is sent only as the ``Authorization`` header.
"""

from __future__ import annotations

from typing import Any

from executions.nodes.base import NodeContext, NodeError, NodeHandler, register
from executions.nodes.http_request import config_error, host_of, read_service, read_timeout
from executions.resilience import outbound

DEFAULT_BASE_URL = "https://api.openai.com/v1"
ROLES = frozenset({"system", "user", "assistant", "developer", "tool"})


def build_messages(config: dict[str, Any]) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    system = config.get("system")
    if system:
        messages.append({"role": "system", "content": str(system)})
    raw = config.get("messages")
    if raw is not None:
        if not isinstance(raw, list):
            raise config_error("messages", "messages must be a list of {role, content}")
        for index, item in enumerate(raw):
            if not isinstance(item, dict) or item.get("role") not in ROLES or not isinstance(item.get("content"), str):
                raise config_error(f"messages/{index}", f"message {index} must be {{role: one of {sorted(ROLES)}, content: string}}")
            messages.append({"role": item["role"], "content": item["content"]})
    prompt = config.get("prompt")
    if prompt is not None and prompt != "":
        messages.append({"role": "user", "content": prompt if isinstance(prompt, str) else str(prompt)})
    if not any(m["role"] != "system" for m in messages):
        raise config_error("prompt", "give a prompt or messages")
    return messages


@register
class LlmPromptHandler(NodeHandler):
    type = "LLM_PROMPT"

    def run(self, ctx: NodeContext) -> Any:
        config = ctx.config
        model = config.get("model")
        if not isinstance(model, str) or not model.strip():
            raise config_error("model", "model must be a non-empty string")
        body: dict[str, Any] = {"model": model.strip(), "messages": build_messages(config)}
        temperature = config.get("temperature")
        if temperature is not None:
            if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
                raise config_error("temperature", "temperature must be a number between 0 and 2")
            body["temperature"] = temperature
        max_tokens = config.get("max_tokens")
        if max_tokens is not None:
            if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
                raise config_error("max_tokens", "max_tokens must be a positive integer")
            body["max_tokens"] = max_tokens
        headers = {"Accept": "application/json"}
        api_key = config.get("api_key")
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        base_url = str(config.get("base_url") or DEFAULT_BASE_URL).strip().rstrip("/")
        url = f"{base_url}/chat/completions"
        response = outbound.request(
            ctx, "POST", url, headers=headers, json=body, service=read_service(config), timeout=read_timeout(ctx), has_json=True
        )
        outbound.raise_for_status(response, host=host_of(url))
        answer = response.body
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"]
        except (TypeError, KeyError, IndexError):
            raise NodeError(
                "http_5xx", "the chat-completions answer has no choices[0].message.content", details={"body": str(answer)[:300]}
            ) from None
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else None
        return {
            "text": text if isinstance(text, str) else ("" if text is None else str(text)),
            "usage": usage,
            "model": str(answer.get("model") or body["model"]),
            "finish_reason": choice.get("finish_reason") if isinstance(choice, dict) else None,
        }
