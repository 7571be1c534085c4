"""EMAIL against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from email.message import Message
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from django.test import override_settings

from executions.models import CircuitBreaker
from executions.nodes.base import NodeError, handlers
from tests.executions.nodes.conftest import make_ctx

pytestmark = pytest.mark.django_db


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Message]] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((envelope, email.message_from_bytes(envelope.content)))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    # pytest-django swaps in the locmem backend; the node must talk real SMTP here.
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=port,
        EMAIL_USE_TLS=False,
        EMAIL_USE_SSL=False,
        EMAIL_HOST_USER="",
        EMAIL_HOST_PASSWORD="",
        DEFAULT_FROM_EMAIL="zyra@example.com",
    ):
        yield inbox, port
    controller.stop()


def run(config: dict[str, Any], **kwargs: Any) -> Any:
    return handlers.get("EMAIL").run(make_ctx("EMAIL", config, **kwargs))


def test_sends_text_and_html_to_all_recipients(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    out = run(
        {
            "to": "a@example.com, b@example.com",
            "cc": ["c@example.com"],
            "bcc": "d@example.com",
            "subject": "Order 7 shipped",
            "body": "plain text",
            "html": "<b>html</b>",
            "reply_to": "ops@example.com",
        }
    )
    assert out["sent"] == 1
    assert out["to"] == ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]
    envelope, msg = inbox.messages[0]
    assert sorted(envelope.rcpt_tos) == ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]
    assert envelope.mail_from == "zyra@example.com"
    assert msg["Subject"] == "Order 7 shipped"
    assert msg["To"] == "a@example.com, b@example.com" and msg["Cc"] == "c@example.com"
    assert msg["Bcc"] is None  # never disclosed in the headers
    assert msg["Reply-To"] == "ops@example.com"
    assert msg["Message-ID"] == out["message_id"]
    parts = {p.get_content_type(): cast(bytes, p.get_payload(decode=True)).decode() for p in msg.walk() if not p.is_multipart()}
    assert parts == {"text/plain": "plain text", "text/html": "<b>html</b>"}
    # The breaker and limiter saw the call under the SMTP service key.
    assert CircuitBreaker.objects.get(key=f"smtp://127.0.0.1:{port}").total_calls == 1


def test_message_id_is_stable_per_attempt(smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    a = run({"to": "a@example.com", "subject": "s", "body": "b"})
    b = run({"to": "a@example.com", "subject": "s", "body": "b"})
    assert a["message_id"] == b["message_id"]  # same (run, node, attempt): a resend is recognisable
    assert len(inbox.messages) == 2


def test_refused_recipient_is_not_retryable(smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    inbox.refuse["nobody@example.com"] = "550 No such user"
    with pytest.raises(NodeError) as info:
        run({"to": "nobody@example.com", "subject": "s", "body": "b"})
    assert info.value.code == "validation"
    inbox.refuse["later@example.com"] = "451 Try again later"
    with pytest.raises(NodeError) as info:
        run({"to": "later@example.com", "subject": "s", "body": "b"})
    assert info.value.code == "connection"
    assert inbox.messages == []


def test_server_down_is_a_connection_error() -> None:
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_HOST="127.0.0.1", EMAIL_PORT=free_port()):
        with pytest.raises(NodeError) as info:
            run({"to": "a@example.com", "subject": "s", "body": "b"})
    assert info.value.code == "connection"


def test_bad_addresses_are_config_errors(smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    with pytest.raises(NodeError) as info:
        run({"to": "not-an-address", "subject": "s"})
    assert info.value.code == "config" and info.value.details == {"path": "/data/config/to"}
    with pytest.raises(NodeError) as info:
        run({"to": "a@example.com\r\nBcc: x@evil.com", "subject": "s"})
    assert info.value.code == "config"
    assert inbox.messages == []
