"""LLM_PROMPT: one OpenAI-compatible /chat/completions call."""

from __future__ import annotations

from workflows.registry import NodeTypeSpec, RetryPolicy, node_types

TEMPLATE = {"type": "string", "pattern": r"^\s*\{\{.*\}\}\s*$"}
MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"enum": ["system", "user", "assistant", "developer", "tool"]},
        "content": {"type": "string"},
    },
}

CONFIG_SCHEMA = {
    "type": "object",
    "required": ["model"],
    "properties": {
        "base_url": {
            "type": "string",
            "minLength": 1,
            "default": "https://api.openai.com/v1",
            "description": "API root; the node calls <base_url>/chat/completions",
        },
        "model": {"type": "string", "minLength": 1, "maxLength": 200},
        "messages": {"anyOf": [{"type": "array", "items": MESSAGE, "minItems": 1}, TEMPLATE]},
        "prompt": {"type": "string", "description": "shorthand for one user message"},
        "system": {"type": "string", "description": "optional system message placed first"},
        "temperature": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 2}, TEMPLATE]},
        "max_tokens": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 1_000_000}, TEMPLATE]},
        "api_key": {"type": "string", "description": "Bearer token; normally {{ secrets.NAME }}"},
        "timeout_s": {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 3600}, TEMPLATE]},
        "service": {"type": "string", "minLength": 1, "maxLength": 300},
    },
    "anyOf": [{"required": ["messages"]}, {"required": ["prompt"]}],
    "additionalProperties": True,
}

OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["text", "usage", "model"],
    "properties": {
        "text": {"type": "string"},
        "usage": {"type": ["object", "null"]},
        "model": {"type": "string"},
        "finish_reason": {"type": ["string", "null"]},
    },
}

SPEC = node_types.register(
    NodeTypeSpec(
        type="LLM_PROMPT",
        category="action",
        label="LLM prompt",
        description="Ask an OpenAI-compatible chat-completions API and return the answer text.",
        config_schema=CONFIG_SCHEMA,
        output_schema=OUTPUT_SCHEMA,
        timeout_s=120.0,
        retry=RetryPolicy(max_attempts=3, backoff_s=2.0, max_backoff_s=60.0),
        queue="io",
        side_effects=False,
    )
)
