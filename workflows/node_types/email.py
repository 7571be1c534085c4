"""EMAIL: send one message through Django's configured email backend (SMTP in production)."""

from __future__ import annotations

from workflows.registry import NodeTypeSpec, RetryPolicy, node_types

TEMPLATE = {"type": "string", "pattern": r"^\s*\{\{.*\}\}\s*$"}
# An address ("a@b.c" or "Name <a@b.c>") or a template rendering to one.
ADDRESS = {"type": "string", "minLength": 3, "maxLength": 320, "pattern": r"(@|\{\{)"}
ADDRESSES = {"anyOf": [ADDRESS, {"type": "array", "items": ADDRESS, "maxItems": 100}]}

CONFIG_SCHEMA = {
    "type": "object",
    "required": ["to", "subject"],
    "properties": {
        "to": {**ADDRESSES, "description": "one address, a comma-separated list, or an array"},
        "cc": ADDRESSES,
        "bcc": ADDRESSES,
        "reply_to": ADDRESSES,
        "from_email": {**ADDRESS, "description": "default settings.DEFAULT_FROM_EMAIL"},
        "subject": {"type": "string", "maxLength": 998},
        "body": {"type": "string", "default": "", "description": "plain-text body"},
        "html": {"type": "string", "description": "optional HTML alternative"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": True,
}

OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["sent", "message_id", "to"],
    "properties": {
        "sent": {"type": "integer", "minimum": 0},
        "message_id": {"type": "string"},
        "to": {"type": "array", "items": {"type": "string"}},
    },
}

SPEC = node_types.register(
    NodeTypeSpec(
        type="EMAIL",
        category="action",
        label="Send email",
        description="Send an email through the configured SMTP server (EMAIL_HOST, EMAIL_PORT, ...).",
        config_schema=CONFIG_SCHEMA,
        output_schema=OUTPUT_SCHEMA,
        timeout_s=30.0,
        retry=RetryPolicy(max_attempts=3, backoff_s=5.0, max_backoff_s=120.0),
        queue="io",
        side_effects=True,
    )
)
