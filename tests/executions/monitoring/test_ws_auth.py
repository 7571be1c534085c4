"""Who may subscribe: owner or staff; others are refused with a clear close code."""

from __future__ import annotations

import uuid
from typing import Any

from django.test import Client

from executions.models import Run
from tests.executions.monitoring.conftest import token_for
from tests.executions.monitoring.support import AsgiServer, read, refused_code
from tests.support.factories import make_workflow, node


def make_run(owner: Any, status: str = "running") -> Run:
    wf = make_workflow(owner, {"nodes": [node("a", "MANUAL")], "edges": []})
    return Run.objects.create(workflow=wf, version=wf.versions.get(), owner=owner, status=status, nodes_total=1)


def test_anonymous_subscription_is_refused_with_4401(asgi_server: AsgiServer, transactional_db: Any, user: Any) -> None:
    run = make_run(user)
    assert refused_code(f"{asgi_server.ws}/ws/runs/{run.id}/", origin=asgi_server.http) == 4401
    assert refused_code(f"{asgi_server.ws}/ws/runs/{run.id}/?token=not-a-token", origin=asgi_server.http) == 4401
    assert refused_code(f"{asgi_server.ws}/ws/workflows/{run.workflow_id}/", origin=asgi_server.http) == 4401


def test_another_users_subscription_is_refused_with_4403(
    asgi_server: AsgiServer, transactional_db: Any, user: Any, other_user: Any
) -> None:
    run = make_run(user)
    key = token_for(other_user)
    assert refused_code(f"{asgi_server.ws}/ws/runs/{run.id}/?token={key}", origin=asgi_server.http) == 4403
    assert refused_code(f"{asgi_server.ws}/ws/workflows/{run.workflow_id}/?token={key}", origin=asgi_server.http) == 4403


def test_unknown_run_is_4404_and_bad_after_is_4400(asgi_server: AsgiServer, transactional_db: Any, user: Any) -> None:
    key = token_for(user)
    assert refused_code(f"{asgi_server.ws}/ws/runs/{uuid.uuid4()}/?token={key}", origin=asgi_server.http) == 4404
    assert refused_code(f"{asgi_server.ws}/ws/workflows/{uuid.uuid4()}/?token={key}", origin=asgi_server.http) == 4404
    run = make_run(user)
    assert refused_code(f"{asgi_server.ws}/ws/runs/{run.id}/?token={key}&after=-1", origin=asgi_server.http) == 4400
    assert refused_code(f"{asgi_server.ws}/ws/runs/{run.id}/?token={key}&after=abc", origin=asgi_server.http) == 4400


def _accepted(stream: Any) -> bool:
    return any(c.get("type") == "replay.done" for c in stream.controls)


def test_owner_by_query_token_subprotocol_and_session_and_staff_are_accepted(
    asgi_server: AsgiServer, transactional_db: Any, user: Any, staff_user: Any
) -> None:
    run = make_run(user)
    url = f"{asgi_server.ws}/ws/runs/{run.id}/"
    done = _accepted

    by_query = read(f"{url}?token={token_for(user)}", origin=asgi_server.http, stop=done, timeout=5)
    assert _accepted(by_query) and by_query.close_code is None

    by_subprotocol = read(url, origin=asgi_server.http, subprotocols=["token", token_for(user)], stop=done, timeout=5)
    assert _accepted(by_subprotocol)
    assert by_subprotocol.subprotocol == "token"

    browser = Client()
    browser.force_login(user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    by_session = read(url, origin=asgi_server.http, headers={"Cookie": cookie}, stop=done, timeout=5)
    assert _accepted(by_session)

    by_staff = read(f"{url}?token={token_for(staff_user)}", origin=asgi_server.http, stop=done, timeout=5)
    assert _accepted(by_staff)

    wf_stream = read(
        f"{asgi_server.ws}/ws/workflows/{run.workflow_id}/", origin=asgi_server.http, headers={"Cookie": cookie}, stop=done, timeout=5
    )
    assert _accepted(wf_stream)
