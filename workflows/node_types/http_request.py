"""HTTP_REQUEST: one outbound HTTP call through the rate limiter, circuit breaker and SSRF guard."""

from __future__ import annotations

from workflows.registry import NodeTypeSpec, RetryPolicy, node_types

# A whole-string template ("{{ input.timeout }}") may stand where a number or
# boolean is expected: it is rendered (keeping its JSON type) before the handler runs.
TEMPLATE = {"type": "string", "pattern": r"^\s*\{\{.*\}\}\s*$"}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

CONFIG_SCHEMA = {
    "type": "object",
    "required": ["url"],
    "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": 8192, "description": "http(s) URL; may contain templates"},
        "method": {"anyOf": [{"enum": METHODS + [m.lower() for m in METHODS]}, TEMPLATE], "default": "GET"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}},
        "query": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean", "array"]},
            "default": {},
            "description": "query-string parameters; arrays repeat the key",
        },
        "json": {"description": "JSON request body (sent with Content-Type: application/json)"},
        "body": {"type": "string", "description": "raw request body; ignored when json is set"},
        "timeout_s": {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 3600}, TEMPLATE]},
        "service": {
            "type": "string",
            "minLength": 1,
            "maxLength": 300,
            "description": "circuit-breaker / rate-limit key; default scheme://host:port of the URL",
        },
        "fail_on_status": {
            "anyOf": [{"type": "boolean"}, TEMPLATE],
            "default": True,
            "description": "fail the node on a non-2xx status (classified http_4xx/http_5xx/http_429/auth)",
        },
        "follow_redirects": {"anyOf": [{"type": "boolean"}, TEMPLATE], "default": True},
    },
    "additionalProperties": True,
}

OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["status", "headers", "body"],
    "properties": {
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "body": {"description": "parsed JSON when the response is JSON, else text"},
        "elapsed_ms": {"type": "number"},
        "url": {"type": "string"},
    },
}

SPEC = node_types.register(
    NodeTypeSpec(
        type="HTTP_REQUEST",
        category="action",
        label="HTTP request",
        description="Call an HTTP API. Non-2xx responses fail the node unless fail_on_status is false.",
        config_schema=CONFIG_SCHEMA,
        output_schema=OUTPUT_SCHEMA,
        timeout_s=30.0,
        retry=RetryPolicy(max_attempts=3, backoff_s=1.0, max_backoff_s=60.0),
        queue="io",
        # Type-level flag: every HTTP node gets an idempotency key; the
        # Idempotency-Key header itself is only sent for non-GET/HEAD/OPTIONS.
        side_effects=True,
    )
)
