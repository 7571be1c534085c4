"""HTTP_REQUEST handler: one call through ``executions.resilience.outbound`` (limiter, breaker, SSRF guard).

Also the home of the small config readers the other calling node types share.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from executions.nodes.base import NodeContext, NodeError, NodeHandler, register
from executions.resilience import outbound

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
FALSE_STRINGS = frozenset({"false", "0", "no", "off"})
TRUE_STRINGS = frozenset({"true", "1", "yes", "on"})


def config_error(field: str, message: str) -> NodeError:
    return NodeError("config", message, details={"path": f"/data/config/{field}"})


def read_url(config: dict[str, Any], field: str = "url") -> str:
    value = config.get(field)
    if not isinstance(value, str) or not value.strip():
        raise config_error(field, f"{field} must be a non-empty string")
    return value.strip()


def read_headers(config: dict[str, Any], field: str = "headers") -> dict[str, str]:
    value = config.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise config_error(field, f"{field} must be an object of header names to values")
    out: dict[str, str] = {}
    for name, raw in value.items():
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "\r\n:"):
            raise config_error(field, f"invalid header name {name!r}")
        text = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
        if "\r" in text or "\n" in text:
            raise config_error(field, f"header {name!r} contains a line break")
        out[name.strip()] = text
    return out


def read_timeout(ctx: NodeContext, field: str = "timeout_s") -> float:
    value = ctx.config.get(field)
    if value is None:
        return ctx.timeout_s
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise config_error(field, f"{field} must be a positive number of seconds")
    return min(float(value), ctx.timeout_s)


def read_bool(config: dict[str, Any], field: str, default: bool) -> bool:
    value = config.get(field)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_STRINGS | FALSE_STRINGS:
        return value.strip().lower() in TRUE_STRINGS
    raise config_error(field, f"{field} must be true or false")


def read_service(config: dict[str, Any]) -> str | None:
    value = config.get("service")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise config_error("service", "service must be a string")
    return value


def host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _query(config: dict[str, Any]) -> dict[str, Any] | None:
    value = config.get("query")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise config_error("query", "query must be an object")
    out: dict[str, Any] = {}
    for key, raw in value.items():
        if isinstance(raw, list):
            out[str(key)] = [_scalar(v) for v in raw]
        elif isinstance(raw, dict):
            raise config_error("query", f"query parameter {key!r} must be a scalar or a list")
        else:
            out[str(key)] = _scalar(raw)
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


@register
class HttpRequestHandler(NodeHandler):
    type = "HTTP_REQUEST"

    def run(self, ctx: NodeContext) -> Any:
        config = ctx.config
        url = read_url(config)
        method = str(config.get("method") or "GET").strip().upper()
        if method not in METHODS:
            raise config_error("method", f"method must be one of {sorted(METHODS)}")
        headers = read_headers(config)
        has_json = "json" in config and config["json"] is not None
        body = config.get("body")
        if body is not None and not has_json and not isinstance(body, str):
            raise config_error("body", "body must be a string (use json for structured data)")
        response = outbound.request(
            ctx,
            method,
            url,
            headers=headers,
            params=_query(config),
            json=config.get("json") if has_json else None,
            content=None if has_json else body,
            service=read_service(config),
            timeout=read_timeout(ctx),
            follow_redirects=read_bool(config, "follow_redirects", True),
            has_json=has_json,
        )
        if read_bool(config, "fail_on_status", True):
            outbound.raise_for_status(response, host=host_of(url))
        return {**response.as_output(), "elapsed_ms": round(response.elapsed_ms, 3), "url": response.url}
