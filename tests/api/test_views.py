"""Customers get what they buy and nothing of ours, on every route; internal keys see everything
(real uvicorn process over a sheet whose items carry floors, run ids and override notes)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from api.views import leaked
from pricing.sheet import PriceSheet, public_items, publish

from api_helpers import engine_items, forecast_frame, start_server, stop_server

NOTES = ["override:range:protect margin on vcira", "override_clipped", "floor", "hold_last:stale telemetry"]
SECRETS = ("run-secret-7", "fc-secret-7", "protect margin", "override", "hold_last", "0.4321")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    var = tmp_path_factory.mktemp("views")
    now = pd.Timestamp.now(tz="UTC").floor("h")
    items = engine_items(now)
    items["floor"] = 0.4321
    items["guardrails"] = [NOTES if i % 3 == 0 else [] for i in range(len(items))]
    sheet = PriceSheet(version=1, generated_at=now, valid_from=now, valid_until=now + pd.Timedelta(hours=24),
                       data_through=now, mlflow_run_id="run-secret-7", forecast_id="fc-secret-7",
                       items=public_items(items))
    publish(sheet, var / "sheets", forecast=forecast_frame(now))
    s = start_server(var, extra_env={"IDLECAP_API__REGION_LOCATIONS": json.dumps({"dc2": "Frankfurt, Germany"})})
    yield s
    stop_server(s)


def _customer_replies(server) -> list[tuple[str, object]]:
    """(what, reply) for every customer route, successes and refusals alike."""
    c = server.client("customer")
    items = c.get("/v1/price-sheet").json()["items"]
    start = min(i["start"] for i in items if i["product"] == "spot" and i["gpu_model"] == "V100")
    out = [("sheet", c.get("/v1/price-sheet")), ("version", c.get("/v1/price-sheet/1")),
           ("history", c.get("/v1/price-sheets")), ("prices", c.get("/v1/prices", params={"limit": 1000})),
           ("prices filtered", c.get("/v1/prices", params={"pool": "p1", "product": "spot"})),
           ("head", c.head("/v1/price-sheet")), ("readyz", c.get("/readyz")), ("healthz", c.get("/healthz")),
           ("openapi", c.get("/openapi.json")), ("docs", c.get("/docs")), ("redoc", c.get("/redoc")),
           ("missing version", c.get("/v1/price-sheet/9")), ("internal route", c.get("/v1/internal/forecasts/p1"))]
    first = c.get("/v1/prices", params={"limit": 5}).json()
    out.append(("prices page 2", c.get("/v1/prices", params={"limit": 5, "page_token": first["next_page_token"]})))
    for body in ({"gpu_model": "V100", "product": "spot", "start": start, "gpus": 4, "hours": 12},
                 {"gpu_model": "V100", "product": "spot", "start": start, "gpus": 4, "single_pool": True},
                 {"gpu_model": "V100", "product": "reserved_1d", "start": min(i["start"] for i in items
                                                                            if i["product"] == "reserved_1d"), "gpus": 2},
                 {"gpu_model": "V100", "product": "spot", "start": start, "gpus": 9999},
                 {"gpu_model": "V100", "product": "spot", "start": "2020-01-01T00:17:00Z", "gpus": 1}):
        out.append((f"quote {body['gpus']}", c.post("/v1/quotes", json=body)))
    return out


def test_no_internal_field_reaches_a_customer_reply_on_any_route(server):
    replies = _customer_replies(server)
    assert {r.status_code for _, r in replies} >= {200, 403, 404, 409, 422}
    for what, r in replies:
        text = r.text
        for s in SECRETS:
            assert s not in text, (what, s)
        if r.content and r.headers.get("content-type", "").startswith("application/json"):
            assert leaked(r.json()) == [], what
    doc = replies[8][1].json()
    assert "/v1/internal/forecasts/{pool}" not in doc["paths"]
    for word in ("fastpath", "idlecap api-key", "InternalPriceSheet", "floor", "mlflow"):
        assert word not in json.dumps(doc), word


def test_customers_get_what_they_buy(server):
    sheet = server.client("customer").get("/v1/price-sheet").json()
    assert "interruption_risk_meaning" in sheet and "reclaimed" in sheet["interruption_risk_meaning"]
    for it in sheet["items"]:
        assert it["price_unit"] == "USD per GPU-hour" and it["hours"] in (6, 24, 168)
        assert it["location"] == ("Frankfurt, Germany" if it["region"] == "dc2" else "unknown")
        assert it["saving_per_gpu_hour"] == pytest.approx(it["reference"]["equivalent_price"] - it["price_per_gpu_hour"],
                                                          abs=1e-3)
        assert ("may be reclaimed" in it["term"]) == (it["product"] == "spot")
        assert set(it) >= {"start", "end", "gpus_offered", "interruption_risk", "reference", "discount_vs_reference"}


def test_internal_keys_also_see_floors_run_ids_and_override_notes(server):
    c = server.client("internal")
    sheet = c.get("/v1/price-sheet").json()
    assert sheet["mlflow_run_id"] == "run-secret-7" and sheet["forecast_id"] == "fc-secret-7"
    assert sheet["content_sha256"]
    assert all(it["floor"] == 0.4321 for it in sheet["items"])
    assert any(it["guardrails"] == NOTES for it in sheet["items"])
    hist = c.get("/v1/price-sheets").json()["sheets"][0]
    assert hist["mlflow_run_id"] == "run-secret-7"
    page = c.get("/v1/prices", params={"limit": 1}).json()
    assert page["items"][0]["floor"] == 0.4321
    cust = server.client("customer").get("/v1/price-sheet")
    assert cust.headers["etag"] != c.get("/v1/price-sheet").headers["etag"]  # one ETag per view


def test_each_scope_gets_304_on_its_own_etag(server):
    cust, internal = server.client("customer"), server.client("internal")
    e_c, e_i = cust.get("/v1/price-sheet").headers["etag"], internal.get("/v1/price-sheet").headers["etag"]
    assert cust.get("/v1/price-sheet", headers={"If-None-Match": e_c}).status_code == 304
    assert internal.get("/v1/price-sheet", headers={"If-None-Match": e_i}).status_code == 304
    assert cust.get("/v1/price-sheet", headers={"If-None-Match": e_i}).status_code == 200
