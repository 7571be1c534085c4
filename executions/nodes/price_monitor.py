"""PRICE_MONITOR handler: CoinGecko-compatible ``/simple/price`` and a condition on the answer.

Conditions: ``above`` (price > threshold), ``below`` (price < threshold),
``change_pct`` (|24 h change in %| >= |threshold|), ``none`` (report only).
The condition applies to ``coin`` if given, else to each of ``coins``;
``triggered`` is true when it holds for at least one.
"""

from __future__ import annotations

import math
from typing import Any

from executions.nodes.base import NodeContext, NodeError, NodeHandler, register
from executions.nodes.http_request import config_error, host_of, read_service, read_timeout
from executions.resilience import outbound

DEFAULT_BASE_URL = "https://api.coingecko.com/api/v3"
CONDITIONS = ("above", "below", "change_pct", "none")


def _coins(config: dict[str, Any]) -> list[str]:
    raw = config.get("coins")
    if isinstance(raw, str):
        items = [c.strip() for c in raw.split(",")]
    elif isinstance(raw, list):
        items = [str(c).strip() for c in raw]
    else:
        raise config_error("coins", "coins must be a list of coin ids or a comma-separated string")
    coins = [c.lower() for c in items if c]
    if not coins:
        raise config_error("coins", "coins must name at least one coin")
    return list(dict.fromkeys(coins))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def evaluate(condition: str, threshold: float | None, price: float | None, change: float | None) -> bool:
    if condition == "none" or threshold is None:
        return False
    if condition == "above":
        return price is not None and price > threshold
    if condition == "below":
        return price is not None and price < threshold
    return change is not None and abs(change) >= abs(threshold)


@register
class PriceMonitorHandler(NodeHandler):
    type = "PRICE_MONITOR"

    def run(self, ctx: NodeContext) -> Any:
        config = ctx.config
        base_url = str(config.get("base_url") or DEFAULT_BASE_URL).strip().rstrip("/")
        coins = _coins(config)
        vs = str(config.get("vs_currency") or "usd").strip().lower()
        condition = str(config.get("condition") or "none").strip().lower()
        if condition not in CONDITIONS:
            raise config_error("condition", f"condition must be one of {list(CONDITIONS)}")
        threshold = None
        if condition != "none":
            threshold = _number(config.get("threshold"))
            if threshold is None:
                raise config_error("threshold", f"condition {condition!r} needs a numeric threshold")
        focus = config.get("coin")
        targets = [str(focus).strip().lower()] if focus else coins
        headers: dict[str, str] = {"Accept": "application/json"}
        api_key = config.get("api_key")
        if api_key:
            header = "x-cg-pro-api-key" if "pro-api." in base_url else "x-cg-demo-api-key"
            headers[header] = str(api_key)
        url = f"{base_url}/simple/price"
        response = outbound.request(
            ctx,
            "GET",
            url,
            headers=headers,
            params={"ids": ",".join(dict.fromkeys(coins + targets)), "vs_currencies": vs, "include_24hr_change": "true"},
            service=read_service(config),
            timeout=read_timeout(ctx),
        )
        outbound.raise_for_status(response, host=host_of(url))
        body = response.body
        if not isinstance(body, dict):
            raise NodeError("http_5xx", "the price API answered with something other than a JSON object", details={"body": str(body)[:300]})
        prices: dict[str, float | None] = {}
        changes: dict[str, float | None] = {}
        for coin in dict.fromkeys(coins + targets):
            entry = body.get(coin)
            entry = entry if isinstance(entry, dict) else {}
            prices[coin] = _number(entry.get(vs))
            changes[coin] = _number(entry.get(f"{vs}_24h_change"))
        if all(prices[c] is None for c in targets):
            raise NodeError(
                "validation",
                f"the price API returned no {vs} price for {', '.join(targets)}",
                details={"coins": targets, "vs_currency": vs},
            )
        triggered = [c for c in targets if evaluate(condition, threshold, prices[c], changes[c])]
        return {
            "prices": prices,
            "changes_pct": changes,
            "vs_currency": vs,
            "condition": condition,
            "threshold": threshold,
            "triggered": bool(triggered),
            "triggered_coins": triggered,
        }
