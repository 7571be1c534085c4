"""NOTIFICATION handler: a JSON post to a webhook, in generic, Slack or Discord shape."""

from __future__ import annotations

from typing import Any

from executions.nodes.base import NodeContext, NodeHandler, register
from executions.nodes.http_request import config_error, host_of, read_headers, read_service, read_timeout, read_url
from executions.resilience import outbound

STYLES = ("webhook", "slack", "discord")


def build_payload(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    style = str(config.get("style") or "webhook").strip().lower()
    if style not in STYLES:
        raise config_error("style", f"style must be one of {list(STYLES)}")
    message = config.get("message")
    if message is not None and not isinstance(message, str):
        message = str(message)
    username = config.get("username")
    if style == "slack":
        if not message:
            raise config_error("message", "a Slack notification needs a message")
        body: dict[str, Any] = {"text": message}
        if username:
            body["username"] = str(username)
        return style, body
    if style == "discord":
        if not message:
            raise config_error("message", "a Discord notification needs a message")
        body = {"content": message[:2000]}  # Discord rejects longer content
        if username:
            body["username"] = str(username)
        return style, body
    payload = config.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise config_error("payload", "payload must be an object")
    body = dict(payload or {})
    if message:
        body.setdefault("message", message)
    if not body:
        raise config_error("message", "a webhook notification needs a message or a payload")
    return style, body


@register
class NotificationHandler(NodeHandler):
    type = "NOTIFICATION"

    def run(self, ctx: NodeContext) -> Any:
        url = read_url(ctx.config)
        style, body = build_payload(ctx.config)
        response = outbound.request(
            ctx,
            "POST",
            url,
            headers=read_headers(ctx.config),
            json=body,
            service=read_service(ctx.config),
            timeout=read_timeout(ctx),
            has_json=True,
        )
        outbound.raise_for_status(response, host=host_of(url))
        return {"delivered": True, "status": response.status, "style": style, "response": response.body}
