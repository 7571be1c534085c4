from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.factories import make_workflow, node
from triggers import services
from triggers.models import SigningScheme, WebhookEndpoint

SECRET = "whsec_" + base64.b64encode(b"zyra-test-signing-key-32-bytes!!").decode()


def webhook_workflow(owner: Any, **config: Any) -> Any:
    return make_workflow(owner, {"nodes": [node("hook", "WEBHOOK", config)], "edges": []}, name="hooked")


def standard_headers(secret: str, body: bytes, msg_id: str = "msg_1", ts: float | None = None) -> dict[str, str]:
    """Signed by the Standard Webhooks reference library itself."""
    stamp = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    try:
        signature = Webhook(secret).sign(msg_id=msg_id, timestamp=stamp, data=body.decode())
    except UnicodeDecodeError:
        # The reference library signs text only; raw bytes go through ours.
        from triggers.signatures import standard_secret_key, standard_sign

        signature = standard_sign(standard_secret_key(secret), msg_id, int(stamp.timestamp()), body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())), "webhook-signature": signature}


def post(client: Any, endpoint: WebhookEndpoint, body: bytes, headers: dict[str, str], content_type: str = "application/json") -> Any:
    return client.generic("POST", endpoint.path, body, content_type=content_type, headers=headers)


@pytest.fixture
def endpoint(user: Any) -> WebhookEndpoint:
    wf = webhook_workflow(user)
    [ep] = services.webhook_endpoint_ensure(wf)
    assert ep.signing_scheme == SigningScheme.STANDARD_WEBHOOKS
    services.webhook_signing_secret_add(endpoint=ep, value=SECRET)
    # Tests below send bursts of requests; the limit has its own test.
    ep.rate_limit_per_s = 0
    ep.save()
    return ep


def payload(**extra: Any) -> bytes:
    return json.dumps({"event": "order.created", "order": {"id": 42, "total": 9.5}, **extra}).encode()
