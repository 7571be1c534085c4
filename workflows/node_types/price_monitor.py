"""PRICE_MONITOR: read prices from a CoinGecko-compatible /simple/price API and test a condition."""

from __future__ import annotations

from workflows.registry import NodeTypeSpec, RetryPolicy, node_types

TEMPLATE = {"type": "string", "pattern": r"^\s*\{\{.*\}\}\s*$"}

CONFIG_SCHEMA = {
    "type": "object",
    "required": ["coins"],
    "properties": {
        "base_url": {
            "type": "string",
            "minLength": 1,
            "default": "https://api.coingecko.com/api/v3",
            "description": "API root; the node calls <base_url>/simple/price",
        },
        "coins": {
            "anyOf": [
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 250},
                {"type": "string", "minLength": 1, "description": "comma-separated ids"},
            ],
            "description": "CoinGecko coin ids, e.g. bitcoin, ethereum",
        },
        "vs_currency": {"type": "string", "minLength": 1, "maxLength": 20, "default": "usd"},
        "condition": {
            "enum": ["above", "below", "change_pct", "none"],
            "default": "none",
            "description": "above/below: price vs threshold; change_pct: |24h change %| >= |threshold|",
        },
        "threshold": {"anyOf": [{"type": "number"}, TEMPLATE]},
        "coin": {"type": "string", "description": "the coin the condition applies to; default: any of coins"},
        "api_key": {"type": "string", "description": "sent as x-cg-demo-api-key; use {{ secrets.NAME }}"},
        "timeout_s": {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 600}, TEMPLATE]},
        "service": {"type": "string", "minLength": 1, "maxLength": 300},
    },
    "if": {"properties": {"condition": {"enum": ["above", "below", "change_pct"]}}, "required": ["condition"]},
    "then": {"required": ["threshold"]},
    "additionalProperties": True,
}

OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["prices", "triggered"],
    "properties": {
        "prices": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
        "changes_pct": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
        "vs_currency": {"type": "string"},
        "condition": {"type": "string"},
        "threshold": {"type": ["number", "null"]},
        "triggered": {"type": "boolean"},
        "triggered_coins": {"type": "array", "items": {"type": "string"}},
    },
}

SPEC = node_types.register(
    NodeTypeSpec(
        type="PRICE_MONITOR",
        category="action",
        label="Price monitor",
        description="Fetch coin prices (CoinGecko-compatible API) and report whether a condition holds.",
        config_schema=CONFIG_SCHEMA,
        output_schema=OUTPUT_SCHEMA,
        timeout_s=15.0,
        retry=RetryPolicy(max_attempts=3, backoff_s=2.0, max_backoff_s=60.0),
        queue="io",
        side_effects=False,
    )
)
