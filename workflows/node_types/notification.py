"""NOTIFICATION: post a message to a webhook (generic JSON, Slack-style or Discord-style)."""

from __future__ import annotations

from workflows.registry import NodeTypeSpec, RetryPolicy, node_types

TEMPLATE = {"type": "string", "pattern": r"^\s*\{\{.*\}\}\s*$"}

CONFIG_SCHEMA = {
    "type": "object",
    "required": ["url"],
    "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": 8192, "description": "webhook URL (http/https)"},
        "style": {
            "enum": ["webhook", "slack", "discord"],
            "default": "webhook",
            "description": 'slack posts {"text"}, discord posts {"content"}, webhook posts payload (or {"message"})',
        },
        "message": {"type": "string", "maxLength": 40000, "description": "the text of the notification"},
        "payload": {"type": "object", "description": "webhook style: the JSON body to post (message is added if absent)"},
        "username": {"type": "string", "maxLength": 80},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "timeout_s": {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 600}, TEMPLATE]},
        "service": {"type": "string", "minLength": 1, "maxLength": 300},
    },
    "anyOf": [{"required": ["message"]}, {"required": ["payload"]}],
    "additionalProperties": True,
}

OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["delivered", "status"],
    "properties": {
        "delivered": {"type": "boolean"},
        "status": {"type": "integer"},
        "style": {"type": "string"},
        "response": {"description": "the receiver's answer (parsed JSON or text)"},
    },
}

SPEC = node_types.register(
    NodeTypeSpec(
        type="NOTIFICATION",
        category="action",
        label="Notification",
        description="Post a message to a generic, Slack-style or Discord-style webhook.",
        config_schema=CONFIG_SCHEMA,
        output_schema=OUTPUT_SCHEMA,
        timeout_s=15.0,
        retry=RetryPolicy(max_attempts=3, backoff_s=2.0, max_backoff_s=60.0),
        queue="io",
        side_effects=True,
    )
)
