"""EMAIL handler: one message through Django's configured email backend (EMAIL_HOST, EMAIL_PORT, ...).

The SMTP server is operator configuration, so there is no SSRF question;
the call still goes through the rate limiter and the circuit breaker under
the service key ``smtp://<EMAIL_HOST>:<EMAIL_PORT>``. The Message-ID is
derived from the node's idempotency key, so a message re-sent by a retried
attempt after an ambiguous failure carries the same id and receivers can drop
the duplicate.
"""

from __future__ import annotations

import hashlib
import smtplib
import socket
import time
from typing import Any

from django.conf import settings
from django.core.mail import BadHeaderError, EmailMultiAlternatives, get_connection

from executions.nodes.base import NodeContext, NodeError, NodeHandler, register
from executions.nodes.http_request import config_error, read_headers
from executions.resilience import outbound

MAX_RECIPIENTS = 100


def _addresses(config: dict[str, Any], field: str, required: bool = False) -> list[str]:
    raw = config.get(field)
    if raw is None or raw == "" or raw == []:
        if required:
            raise config_error(field, f"{field} needs at least one address")
        return []
    items = raw.split(",") if isinstance(raw, str) else raw if isinstance(raw, list) else None
    if items is None:
        raise config_error(field, f"{field} must be an address, a comma-separated list or a list")
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if "@" not in text or any(c in text for c in "\r\n"):
            raise config_error(field, f"{text!r} is not an email address")
        out.append(text)
    if required and not out:
        raise config_error(field, f"{field} needs at least one address")
    if len(out) > MAX_RECIPIENTS:
        raise config_error(field, f"at most {MAX_RECIPIENTS} addresses")
    return out


def smtp_service_key() -> str:
    return f"smtp://{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"


def _classify(exc: BaseException) -> NodeError:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return NodeError("auth", f"SMTP authentication failed ({exc.smtp_code})")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = {
            addr: f"{code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
            for addr, (code, msg) in exc.recipients.items()
        }
        transient = all(400 <= code < 500 for code, _ in exc.recipients.values())
        return NodeError(
            "connection" if transient else "validation", "the SMTP server refused the recipients", details={"refused": refused}
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        message = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        # 4yz replies are transient by definition (RFC 5321); 5yz are permanent.
        return NodeError("connection" if 400 <= code < 500 else "validation", f"SMTP {code}: {message}"[:500], details={"smtp_code": code})
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return NodeError("timeout", f"the SMTP server did not answer in time: {exc}")
    return NodeError("connection", f"{type(exc).__name__} talking to the SMTP server: {exc}"[:500])


@register
class EmailHandler(NodeHandler):
    type = "EMAIL"

    def run(self, ctx: NodeContext) -> Any:
        config = ctx.config
        to = _addresses(config, "to", required=True)
        cc = _addresses(config, "cc")
        bcc = _addresses(config, "bcc")
        reply_to = _addresses(config, "reply_to")
        subject = config.get("subject")
        if not isinstance(subject, str):
            raise config_error("subject", "subject must be a string")
        body = config.get("body") or ""
        html = config.get("html")
        from_email = config.get("from_email") or settings.DEFAULT_FROM_EMAIL
        headers = read_headers(config)
        digest = hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:32]
        message_id = f"<{digest}@zyra.invalid>"
        headers.setdefault("Message-ID", message_id)
        message_id = headers["Message-ID"]
        timeout = outbound.time_budget(ctx, min(float(settings.EMAIL_TIMEOUT or ctx.timeout_s), ctx.timeout_s))
        try:
            message = EmailMultiAlternatives(
                subject=subject.replace("\r", " ").replace("\n", " "),
                body=str(body),
                from_email=str(from_email),
                to=to,
                cc=cc,
                bcc=bcc,
                reply_to=reply_to,
                headers=headers,
                connection=get_connection(fail_silently=False, timeout=timeout),
            )
            if html:
                message.attach_alternative(str(html), "text/html")
            message.message()  # build now: header errors are config errors, not send failures
        except (BadHeaderError, ValueError) as exc:
            raise NodeError("validation", f"invalid email: {exc}") from None

        admission = outbound.admit(ctx, smtp_service_key(), timeout)
        started = time.monotonic()
        try:
            sent = message.send(fail_silently=False)
        except (smtplib.SMTPException, OSError) as exc:
            error = _classify(exc)
            counts = error.code in ("timeout", "connection") and not isinstance(exc, smtplib.SMTPResponseException)
            admission.settle(
                "failure" if counts else "success", duration_s=time.monotonic() - started, error=f"{error.code}: {error.message}"
            )
            raise error from None
        except BaseException:
            admission.settle("ignored")
            raise
        admission.settle("success", duration_s=time.monotonic() - started)
        return {"sent": int(sent), "message_id": message_id, "to": to + cc + bcc}
