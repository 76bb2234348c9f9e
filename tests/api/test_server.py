"""The leasing API over HTTP, against a real uvicorn process on 127.0.0.1 (see conftest)."""
from __future__ import annotations

# ruff: noqa: F811  (the api_server fixture is imported from api_helpers and named by the tests)

import json
import time

import pandas as pd
import pytest

from api.keys import revoke_key

from api_helpers import api_server  # noqa: F401  (fixture)


def test_probes_need_no_key(api_server):
    c = api_server.client(None)
    assert c.get("/healthz").json() == {"status": "ok"}
    r = c.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True and r.json()["sheet_version"] == 2


@pytest.mark.parametrize("path", ["/v1/price-sheet", "/v1/price-sheet/1", "/v1/price-sheets", "/v1/prices",
                                  "/v1/internal/forecasts/p1"])
def test_401_without_a_valid_key(api_server, path):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {api_server.customer}"},
                    {"Authorization": f"Bearer {api_server.customer}x"}):
        r = api_server.client(None).get(path, headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"] == "unauthorized" and r.headers["www-authenticate"].startswith("Bearer")
    assert api_server.client(None).post("/v1/quotes", json={}).status_code == 401


def test_403_for_the_wrong_scope_and_x_api_key_works(api_server):
    r = api_server.client("customer").get("/v1/internal/forecasts/p1")
    assert r.status_code == 403 and "customer" in r.json()["message"]
    r = api_server.client(None).get("/v1/internal/forecasts/p1", headers={"X-API-Key": api_server.internal})
    assert r.status_code == 200
    assert api_server.client("internal").get("/v1/price-sheet").status_code == 200  # internal covers customer


def test_revoked_key_is_refused_without_a_restart(api_server):
    from api.keys import create_key

    key, rec = create_key(api_server.var / "api_keys.json", "customer", "short-lived")
    deadline = time.monotonic() + 5
    while api_server.client(key).get("/v1/price-sheet").status_code != 200:  # picked up within reload_seconds
        assert time.monotonic() < deadline
        time.sleep(0.05)
    revoke_key(api_server.var / "api_keys.json", rec.key_id)
    deadline = time.monotonic() + 5
    while api_server.client(key).get("/v1/price-sheet").status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_current_sheet_etag_304_and_cache_control(api_server):
    c = api_server.client()
    r = c.get("/v1/price-sheet")
    assert r.status_code == 200
    published = json.loads((api_server.sheets / "price-sheet-000002.json").read_bytes())
    body = r.json()  # the customer view of the published file: same offers, same prices, no internal fields
    assert [(i["pool"], i["start"], i["price_per_gpu_hour"]) for i in body["items"]] == \
        [(i["pool"], i["start"], i["price_per_gpu_hour"]) for i in published["items"]]
    etag = r.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")  # strong
    assert r.headers["idlecap-sheet-version"] == "2" and r.headers["idlecap-sheet-status"] == "fresh"
    max_age = int(r.headers["cache-control"].split("max-age=")[1])
    left = (pd.Timestamp(r.json()["valid_until"]) - pd.Timestamp.now(tz="UTC")).total_seconds()
    assert abs(max_age - left) < 30
    for inm in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r2 = c.get("/v1/price-sheet", headers={"If-None-Match": inm})
        assert r2.status_code == 304 and r2.content == b"" and r2.headers["etag"] == etag
    assert c.get("/v1/price-sheet", headers={"If-None-Match": '"stale"'}).status_code == 200


def test_a_version_and_the_history(api_server):
    c = api_server.client()
    r = c.get("/v1/price-sheet/1")
    assert r.status_code == 200 and r.json()["version"] == 1
    assert "immutable" in r.headers["cache-control"]
    assert c.get("/v1/price-sheet/1", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    r = c.get("/v1/price-sheet/99")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert c.get("/v1/price-sheets", params={"limt": 1}).status_code == 422
    h = c.get("/v1/price-sheets").json()
    assert [s["version"] for s in h["sheets"]] == [2, 1] and h["next_page_token"] is None
    assert h["sheets"][0]["items"] == len(c.get("/v1/price-sheet").json()["items"])
    p1 = c.get("/v1/price-sheets", params={"limit": 1}).json()
    p2 = c.get("/v1/price-sheets", params={"limit": 1, "page_token": p1["next_page_token"]}).json()
    assert [s["version"] for s in p1["sheets"] + p2["sheets"]] == [2, 1] and p2["next_page_token"] is None


def test_filters_match_a_filter_of_the_sheet(api_server):
    c = api_server.client()
    items = c.get("/v1/price-sheet").json()["items"]
    starts = sorted({i["start"] for i in items})
    cases = [
        ({"gpu_model": "V100"}, lambda i: i["gpu_model"] == "V100"),
        ({"region": "dc2"}, lambda i: i["region"] == "dc2"),
        ({"pool": ["p1", "p4"]}, lambda i: i["pool"] in ("p1", "p4")),
        ({"pool": "p1,p4"}, lambda i: i["pool"] in ("p1", "p4")),
        ({"product": "spot", "gpu_model": "H100"}, lambda i: i["product"] == "spot" and i["gpu_model"] == "H100"),
        ({"start_from": starts[2], "start_to": starts[5]}, lambda i: starts[2] <= i["start"] < starts[5]),
        ({"gpu_model": "B200"}, lambda i: False),
    ]
    for params, keep in cases:
        r = c.get("/v1/prices", params={**params, "limit": 1000})
        assert r.status_code == 200, (params, r.text)
        body = r.json()
        want = [i for i in items if keep(i)]
        assert body["items"] == want and body["total"] == len(want), params
        assert body["sheet_version"] == 2 and r.headers["idlecap-sheet-status"] == "fresh"


def test_pagination_walks_every_item_once(api_server):
    c = api_server.client()
    items = c.get("/v1/price-sheet").json()["items"]
    got, token, pages = [], None, 0
    while True:
        params = {"limit": 7, **({"page_token": token} if token else {})}
        body = c.get("/v1/prices", params=params).json()
        got += body["items"]
        pages += 1
        token = body["next_page_token"]
        if token is None:
            break
    assert got == items and pages == -(-len(items) // 7)
    other = c.get("/v1/prices", params={"gpu_model": "V100", "page_token": c.get("/v1/prices", params={"limit": 3})
                                        .json()["next_page_token"]})
    assert other.status_code == 422 and other.json()["error"] == "invalid_page_token"
    assert c.get("/v1/prices", params={"page_token": "garbage!"}).status_code == 422


def test_clear_422s(api_server):
    c = api_server.client()
    for params, needle in (({"limit": 0}, "limit"), ({"limit": 100000}, "limit"), ({"product": "spto"}, "unknown product"),
                           ({"start_from": "yesterday"}, "start_from"), ({"start_from": "2026-01-01T00:00:00"}, "timezone"),
                           ({"start_from": "2026-01-02T00:00:00Z", "start_to": "2026-01-01T00:00:00Z"}, "after"),
                           ({"start_to": "0.5"}, "ISO 8601"), ({"start_from": 1767225600}, "ISO 8601"),
                           ({"gpu": "V100"}, "unknown query parameter")):
        r = c.get("/v1/prices", params=params)
        assert r.status_code == 422, params
        assert needle in r.json()["message"], (params, r.json())
        assert "Traceback" not in r.text


def _first(items, product, model="V100"):
    return min(i["start"] for i in items if i["product"] == product and i["gpu_model"] == model)


def test_quotes_over_http(api_server):
    c = api_server.client()
    items = c.get("/v1/price-sheet").json()["items"]
    start = _first(items, "spot")
    r = c.post("/v1/quotes", json={"gpu_model": "V100", "product": "spot", "start": start, "gpus": 10, "hours": 12})
    assert r.status_code == 200, r.text
    q = r.json()
    assert q["gpus"] == 10 and q["gpu_hours"] == 120 and q["sheet_version"] == 2
    assert q["total_price"] == pytest.approx(sum(ln["subtotal"] for ln in q["lines"]), abs=0.011)
    offered = sum(i["gpus_offered"] for i in items if i["product"] == "spot" and i["gpu_model"] == "V100"
                  and i["start"] == start)
    r = c.post("/v1/quotes", json={"gpu_model": "V100", "product": "spot", "start": start, "gpus": offered + 1})
    assert r.status_code == 409
    assert r.json()["error"] == "insufficient_capacity" and r.json()["detail"]["available_gpus"] == offered
    r = c.post("/v1/quotes", json={"gpu_model": "V100", "product": "reserved_1d", "start": _first(items, "reserved_1d"),
                                   "gpus": 2})
    assert r.status_code == 200 and r.json()["gpu_hours"] == 48
    for bad, needle in (({"gpus": 0}, "gpus"), ({"start": 1767225600}, "ISO 8601"), ({"product": "forever"}, "product"),
                        ({"start": "2026-01-01T00:00:00"}, "timezone"), ({"surprise": 1}, "surprise"),
                        ({"hours": 7}, "blocks")):
        body = {"gpu_model": "V100", "product": "spot", "start": start, "gpus": 1, **bad}
        r = c.post("/v1/quotes", json=body)
        assert r.status_code == 422, bad
        assert needle in r.json()["message"], (bad, r.json())
    r = c.post("/v1/quotes", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "Traceback" not in r.text


def test_body_limit(api_server):
    c = api_server.client()
    big = {"gpu_model": "V100", "product": "spot", "start": "2026-01-01T00:00:00Z", "gpus": 1, "pool": "x" * 20_000}
    r = c.post("/v1/quotes", json=big)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"

    def chunks():  # no Content-Length: the limit counts what arrives
        for _ in range(40):
            yield b" " * 1000

    r = c.post("/v1/quotes", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert c.get("/healthz").status_code == 200


def test_internal_forecast(api_server):
    c = api_server.client("internal")
    r = c.get("/v1/internal/forecasts/p1")
    assert r.status_code == 200
    f = r.json()
    assert f["pool"] == "p1" and f["sheet_version"] == 2 and len(f["hours"]) == 48
    assert all(h["q05"] <= h["q50"] <= h["q95"] for h in f["hours"])
    assert {s["start"] for s in f["spot"]} == {i["start"] for i in c.get("/v1/prices", params={"pool": "p1", "product": "spot"})
                                               .json()["items"]}
    assert c.get("/v1/internal/forecasts/p1", params={"version": 1}).json()["sheet_version"] == 1
    r = c.get("/v1/internal/forecasts/nope")
    assert r.status_code == 404 and "p1" in r.json()["detail"]["pools"]


def test_access_log_is_json_without_secrets(api_server):
    api_server.client().get("/v1/prices", params={"gpu_model": "V100", "token": "should-not-appear"})
    api_server.client(None).get("/v1/prices", headers={"Authorization": "Bearer ick_000000000000_" + "s" * 43})
    time.sleep(0.5)  # access lines are flushed by the reload loop (0.2 s here)
    lines = [json.loads(x) for x in api_server.access_log().splitlines() if x.startswith('{"ts"')]
    assert lines and {"request_id", "method", "path", "status", "ms", "key_id"} <= set(lines[-1])
    text = api_server.access_log()
    assert api_server.customer not in text and api_server.internal not in text
    assert api_server.customer.split("_", 2)[2] not in text and "s" * 43 not in text and "should-not-appear" not in text
    assert any(x["status"] == 401 and x["key_id"] is None for x in lines)
    cust_id = api_server.customer.split("_")[1]
    assert any(x["key_id"] == cust_id for x in lines)


def test_errors_carry_a_request_id_and_no_trace(api_server):
    r = api_server.client().get("/v1/nothing-here", headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 404 and r.json()["request_id"] == "abc-123" and r.headers["x-request-id"] == "abc-123"
    r = api_server.client().delete("/v1/price-sheet")
    assert r.status_code == 405 and "Traceback" not in r.text
