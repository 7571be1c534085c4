"""PRICE_MONITOR against a CoinGecko-compatible local server."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from executions.nodes.base import NodeError, handlers
from tests.executions.nodes.conftest import make_ctx
from tests.support.servers import LocalServer, Request

pytestmark = pytest.mark.django_db

PRICES = {
    "bitcoin": {"usd": 65000.5, "usd_24h_change": -6.2, "eur": 60000.0, "eur_24h_change": -6.0},
    "ethereum": {"usd": 3100.0, "usd_24h_change": 1.5},
}


@pytest.fixture
def api(server: LocalServer) -> LocalServer:
    def simple_price(req: Request) -> tuple[int, dict[str, str], bytes]:
        q = parse_qs(urlsplit(req.path).query)
        ids = q["ids"][0].split(",")
        vs = q["vs_currencies"][0]
        body = {}
        for coin in ids:
            if coin in PRICES and vs in PRICES[coin]:
                entry = {vs: PRICES[coin][vs]}
                if q.get("include_24hr_change") == ["true"] and f"{vs}_24h_change" in PRICES[coin]:
                    entry[f"{vs}_24h_change"] = PRICES[coin][f"{vs}_24h_change"]
                body[coin] = entry
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    server.route("/api/v3/simple/price", simple_price)
    return server


def run(api: LocalServer, **config: Any) -> Any:
    return handlers.get("PRICE_MONITOR").run(make_ctx("PRICE_MONITOR", {"base_url": api.url("/api/v3"), **config}))


def test_above_and_below(api: LocalServer) -> None:
    out = run(api, coins=["bitcoin", "ethereum"], condition="above", threshold=50000)
    assert out["prices"] == {"bitcoin": 65000.5, "ethereum": 3100.0}
    assert out["triggered"] is True and out["triggered_coins"] == ["bitcoin"]
    out = run(api, coins="bitcoin, ethereum", condition="below", threshold=3000)
    assert out["triggered"] is False and out["triggered_coins"] == []
    req = api.requests[0]
    assert "ids=bitcoin%2Cethereum" in req.path and "vs_currencies=usd" in req.path


def test_change_pct_on_one_coin(api: LocalServer) -> None:
    out = run(api, coins=["bitcoin", "ethereum"], coin="ethereum", condition="change_pct", threshold=5)
    assert out["changes_pct"]["ethereum"] == 1.5 and out["triggered"] is False
    out = run(api, coins=["bitcoin"], condition="change_pct", threshold=5)
    assert out["triggered"] is True and out["changes_pct"]["bitcoin"] == -6.2


def test_other_currency_and_report_only(api: LocalServer) -> None:
    out = run(api, coins=["bitcoin"], vs_currency="EUR")
    assert out["prices"] == {"bitcoin": 60000.0} and out["vs_currency"] == "eur"
    assert out["condition"] == "none" and out["triggered"] is False


def test_unknown_coin_and_missing_threshold(api: LocalServer) -> None:
    with pytest.raises(NodeError) as info:
        run(api, coins=["dogecoin-classic"], condition="above", threshold=1)
    assert info.value.code == "validation"
    with pytest.raises(NodeError) as info:
        run(api, coins=["bitcoin"], condition="above")
    assert info.value.code == "config" and info.value.details == {"path": "/data/config/threshold"}


def test_api_errors_are_classified(server: LocalServer) -> None:
    server.responses("/api/v3/simple/price", [(503, {"status": "maintenance"})])
    with pytest.raises(NodeError) as info:
        run(server, coins=["bitcoin"])
    assert info.value.code == "http_5xx"
