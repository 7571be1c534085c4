"""Acceptance: after real runs that use secrets, the values appear nowhere.

Scans every table's text/JSON columns (and bytea, for good measure), the API
responses and events of those runs, and the captured logs (in-process and the
worker's log file) for the values and their common encodings.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from django.db import connection

from tests.support.factories import edge, make_workflow, node, wait_run
from tests.support.servers import LocalServer, Request
from tests.support.workers import LOG_DIR


def _forms(value: str) -> list[str]:
    raw = value.encode()
    return [value, base64.b64encode(raw).decode().rstrip("="), quote(value, safe=""), quote_plus(value)]


def _scan_database(values: list[str]) -> list[str]:
    hits: list[str] = []
    with connection.cursor() as cur:
        cur.execute(
            """SELECT table_name, column_name, data_type FROM information_schema.columns
               WHERE table_schema = 'public'
                 AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea', 'character')"""
        )
        columns = cur.fetchall()
        assert len(columns) > 20  # sanity: we really are looking at the schema
        for table, column, dtype in columns:
            for value in values:
                if dtype == "bytea":
                    sql = f'SELECT count(*) FROM "{table}" WHERE position(%s::bytea in "{column}") > 0'
                    cur.execute(sql, [value.encode()])
                else:
                    sql = f'SELECT count(*) FROM "{table}" WHERE strpos("{column}"::text, %s) > 0'
                    cur.execute(sql, [value])
                if cur.fetchone()[0]:
                    hits.append(f"{table}.{column}")
    return hits


def _echo(req: Request) -> tuple[int, dict[str, str], bytes]:
    body = {"method": req.method, "path": req.path, "headers": req.headers, "body": req.body.decode("utf-8", "replace")}
    status = 400 if req.path.startswith("/fail") else 200  # 4xx: not retried
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


@pytest.mark.slow
def test_no_plaintext_anywhere(worker: Any, api: Any, user: Any, server: LocalServer, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    token = "zyra-plain-" + uuid.uuid4().hex
    password = "pw-" + uuid.uuid4().hex
    for name, value in (("API_TOKEN", token), ("DB_PASSWORD", password)):
        assert api.post("/api/secrets/", {"name": name, "value": value}, format="json").status_code == 201
    server.route("/echo", _echo)
    server.route("/fail", _echo)
    definition = {
        "nodes": [
            node("start", "MANUAL"),
            node(
                "call",
                "HTTP_REQUEST",
                {
                    "url": server.url("/echo") + "?k={{ secrets.API_TOKEN }}",
                    "method": "POST",
                    "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}", "X-Pass": "{{ secrets.DB_PASSWORD }}"},
                    "json": {"token": "{{ secrets.API_TOKEN }}", "nested": {"pw": "{{ secrets.DB_PASSWORD }}"}},
                },
            ),
            node(
                "fail",
                "HTTP_REQUEST",
                {"url": server.url("/fail"), "method": "POST", "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}"}},
                on_error="continue",
            ),
        ],
        "edges": [edge("start", "call"), edge("start", "fail")],
    }
    wf = make_workflow(user, definition, name="uses-secrets")
    responses: list[str] = []
    run_ids = []
    for i in range(2):
        r = api.post(f"/api/workflows/{wf.pk}/runs/", {"inputs": {"i": i}}, format="json")
        assert r.status_code == 202, r.content
        responses.append(r.content.decode())
        run_ids.append(r.json()["id"])
    for run_id in run_ids:
        run = wait_run(run_id, timeout=60)
        assert run.status in {"succeeded", "partially_succeeded"}, run.status
        detail = api.get(f"/api/runs/{run_id}/")
        events = api.get(f"/api/runs/{run_id}/events/")
        assert detail.status_code == 200 and events.status_code == 200
        responses += [detail.content.decode(), events.content.decode()]
        nodes = {n["node_id"]: n for n in detail.json()["nodes"]}
        # The secret really went out (the server saw it) and came back redacted.
        echoed = nodes["call"]["output"]["body"]
        assert echoed["headers"]["authorization"] == "Bearer [redacted:API_TOKEN]"
        assert echoed["headers"]["x-pass"] == "[redacted:DB_PASSWORD]"
        assert "[redacted:API_TOKEN]" in echoed["path"]
        assert nodes["fail"]["status"] == "failed"
    assert any(req.headers.get("authorization") == f"Bearer {token}" for req in server.requests)
    assert any(req.headers.get("x-pass") == password for req in server.requests)
    responses += [api.get("/api/runs/").content.decode(), api.get("/api/secrets/").content.decode()]

    forms = _forms(token) + _forms(password)
    assert _scan_database(forms) == []
    # Control: the scanner does find a value that is stored in clear.
    wf.description = f"oops {quote_plus(password)}"
    wf.save(update_fields=["description"])
    assert set(_scan_database(forms)) == {"workflows_workflow.description"}
    wf.description = ""
    wf.save(update_fields=["description"])
    for text in responses:
        for form in forms:
            assert form not in text
    logs = caplog.text
    worker_logs = "".join(p.read_text(errors="replace") for p in Path(LOG_DIR).glob("*.log"))
    for form in forms:
        assert form not in logs
        assert form not in worker_logs
