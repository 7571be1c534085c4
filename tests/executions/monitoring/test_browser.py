"""The live run page in real headless Chromium (Debian's package, driven by playwright)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from executions import services
from tests.executions.monitoring.support import AsgiServer
from tests.support.factories import edge, http, make_workflow, node, wait_run
from tests.support.servers import LocalServer
from tests.support.workers import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = ROOT / "artifacts" / "live_run.png"


@pytest.mark.browser
@pytest.mark.slow
def test_live_page_shows_a_node_go_from_running_to_succeeded_without_reload(
    asgi_server: AsgiServer, worker: Any, user: Any, server: LocalServer
) -> None:
    assert Path(CHROMIUM).exists(), "Debian's chromium is required: apt-get install -y chromium"
    from playwright.sync_api import sync_playwright

    server.slow("/slow", 4.0)
    definition = {
        "nodes": [node("start", "MANUAL"), http("slow", server.url("/slow"), timeout_s=30), node("done", "MERGE")],
        "edges": [edge("start", "slow"), edge("slow", "done")],
    }
    definition["nodes"][1]["position"] = {"x": 250, "y": 0}
    definition["nodes"][2]["position"] = {"x": 500, "y": 0}
    wf = make_workflow(user, definition, name="slow demo")
    run = services.run_start(workflow=wf, inputs={}, user=user)
    login = Client()
    login.force_login(user)
    session = login.cookies["sessionid"].value

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 600})
            context.add_cookies([{"name": "sessionid", "value": session, "url": asgi_server.http}])
            page = context.new_page()
            page.goto(f"{asgi_server.http}/runs/{run.id}/live/")
            page.evaluate("window.__sameDocument = true")
            slow = 'g.node[data-node-id="slow"]'
            page.wait_for_selector(f'{slow}[data-status="running"]', timeout=15_000)
            assert server.count("/slow") <= 1
            page.wait_for_selector(f'{slow}[data-status="succeeded"]', timeout=30_000)
            page.wait_for_selector('#run-status[data-status="succeeded"]', timeout=15_000)
            assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
            assert page.inner_text("#progress-text") == "3/3"
            # Coloured by status (green fill), edges taken drawn as taken.
            fill = page.eval_on_selector(f"{slow} rect", "r => getComputedStyle(r).fill")
            assert fill == "rgb(200, 239, 207)", fill
            assert page.eval_on_selector('path[data-edge-id="slow->done"]', "p => p.getAttribute('class')") == "edge taken"

            page.click(slow)
            page.wait_for_selector('#detail-body dd[data-field="status"]:text("succeeded")', timeout=10_000)
            page.wait_for_function("document.getElementById('detail-hint').textContent === ''", timeout=10_000)
            assert page.inner_text('#detail-body dd[data-field="attempts"]') == "1"
            duration = int(page.inner_text('#detail-body dd[data-field="duration_ms"]'))
            assert duration >= 3500
            assert '"slept"' in page.inner_text('#detail-body dd[data-field="output"]')
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert wait_run(run.id).status == "succeeded"
    assert SCREENSHOT.stat().st_size > 1000
