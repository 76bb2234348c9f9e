"""Strict inputs on every route, the fast path included, and error bodies of bounded size; quotes a
customer can trust (real uvicorn process)."""
from __future__ import annotations

# ruff: noqa: F811  (the api_server fixture is imported from api_helpers and named by the tests)

import pytest

from api_helpers import api_server  # noqa: F401  (fixture)

BIG = "x" * 8192


def _spot_start(c, model="V100"):
    items = c.get("/v1/price-sheet").json()["items"]
    return min(i["start"] for i in items if i["product"] == "spot" and i["gpu_model"] == model)


def test_if_none_match_limit_holds_on_the_fast_path_too(api_server):
    c = api_server.client()
    for path in ("/v1/price-sheet", "/v1/price-sheet/2"):
        ok = c.get(path, headers={"If-None-Match": '"' + "a" * 1022 + '"'})
        assert ok.status_code == 200, path
        r = c.get(path, headers={"If-None-Match": '"' + "a" * 1023 + '"'})
        assert r.status_code == 422 and "if-none-match" in r.json()["message"], path
        assert len(r.content) < 1024


@pytest.mark.parametrize("path", ["/v1/prices", "/v1/price-sheet", "/v1/price-sheet/2", "/v1/price-sheets",
                                  "/healthz", "/readyz", "/v1/internal/forecasts/p1"])
def test_unknown_parameters_are_refused_with_the_name_cut_short(api_server, path):
    c = api_server.client("internal")
    r = c.get(path, params={BIG: "1"})
    assert r.status_code == 422, path
    assert r.json()["error"] == "invalid_request" and "unknown query parameter" in r.json()["message"]
    assert len(r.content) < 2048 and BIG not in r.text, (path, len(r.content))
    r = c.get(path, params={f"p{i}": "1" for i in range(200)})
    assert r.status_code == 422 and len(r.content) < 4096, path


def test_error_bodies_are_bounded_for_any_input(api_server):
    c = api_server.client()
    start = _spot_start(c)
    cases = [
        c.post("/v1/quotes", json={"gpu_model": "V100", "product": "spot", "start": start, "gpus": 1, BIG[:8000]: 1}),
        c.post("/v1/quotes", json={"gpu_model": BIG[:4000], "product": "spot", "start": start, "gpus": 1}),
        c.post("/v1/quotes", json={"gpu_model": "V100", "product": BIG[:4000], "start": BIG[:4000], "gpus": 1}),
        c.get("/v1/prices", params={"pool": ",".join(f"p{i}" for i in range(500))}),
        c.get("/v1/prices", params={"product": BIG[:4000]}),
        c.get("/v1/internal/forecasts/" + "y" * 120, headers={"Authorization": f"Bearer {api_server.internal}"}),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500 and len(r.content) <= 8192, (r.status_code, len(r.content))
        assert BIG[:300] not in r.text


@pytest.mark.parametrize("version", ["1.0", "+1", "%201", "1_0", "1e0", "0x1", "-1", "0", "true", "01", "002"])
def test_the_version_path_takes_digits_only(api_server, version):
    r = api_server.client().get(f"/v1/price-sheet/{version}")
    assert r.status_code == 422, (version, r.status_code, r.text)


@pytest.mark.parametrize("params", [{"limit": "1_0"}, {"limit": "+5"}, {"limit": " 5"}, {"limit": "5.0"}])
def test_numbers_in_queries_are_plain_digits(api_server, params):
    c = api_server.client("internal")
    assert c.get("/v1/prices", params=params).status_code == 422
    assert c.get("/v1/price-sheets", params=params).status_code == 422
    assert c.get("/v1/internal/forecasts/p1", params={"version": params["limit"]}).status_code == 422


@pytest.mark.parametrize("bad", [{"gpus": True}, {"gpus": "8"}, {"gpus": 8.0}, {"hours": "12"}, {"hours": True},
                                 {"single_pool": "yes"}, {"single_pool": 1}, {"max_interruption_risk": True},
                                 {"max_interruption_risk": "0.3"}, {"max_interruption_risk": 1.5},
                                 {"gpu_model": 5}, {"region": ["dc1"]}])
def test_quote_types_are_strict(api_server, bad):
    c = api_server.client()
    body = {"gpu_model": "V100", "product": "spot", "start": _spot_start(c), "gpus": 2, **bad}
    r = c.post("/v1/quotes", json=body)
    assert r.status_code == 422, (bad, r.text)
    assert next(iter(bad)) in r.json()["message"]


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-05:00", "1969-12-31T23:00:00Z",
                                   "3000-01-01T00:00:00Z", "2026-02-30T00:00:00Z"])
def test_out_of_range_times_are_422_not_500(api_server, start):
    c = api_server.client()
    for r in (c.post("/v1/quotes", json={"gpu_model": "V100", "product": "spot", "start": start, "gpus": 1}),
              c.get("/v1/prices", params={"start_from": start}), c.get("/v1/prices", params={"start_to": start})):
        assert r.status_code == 422, (start, r.status_code, r.text)
        assert r.json()["error"] == "invalid_request"


def test_a_start_off_the_block_grid_is_422_with_the_valid_starts(api_server):
    c = api_server.client()
    start = _spot_start(c)
    off = start[:14] + "17:00Z" if not start.startswith("17", 11) else start[:11] + "16:00:00Z"
    for s in (off, "2020-01-01T00:00:00Z"):
        r = c.post("/v1/quotes", json={"gpu_model": "V100", "product": "spot", "start": s, "gpus": 1})
        assert r.status_code == 422, (s, r.text)
        body = r.json()
        assert body["error"] == "invalid_start" and start in body["detail"]["valid_starts"]
        assert "valid starts" in body["message"] and body["detail"]["block_hours"] == 6
    reserved = c.post("/v1/quotes", json={"gpu_model": "V100", "product": "reserved_7d", "start": start, "gpus": 1})
    assert reserved.status_code == 422 and reserved.json()["error"] == "invalid_start"


def test_quotes_carry_risk_reference_saving_and_validity(api_server):
    c = api_server.client()
    start = _spot_start(c)
    q = c.post("/v1/quotes", json={"gpu_model": "V100", "product": "spot", "start": start, "gpus": 10, "hours": 12}).json()
    p_none = 1.0
    for ln in q["lines"]:
        p_none *= 1 - ln["interruption_risk"]
    assert q["interruption_risk"] == pytest.approx(1 - p_none, abs=1e-4)
    assert q["max_line_interruption_risk"] == max(ln["interruption_risk"] for ln in q["lines"])
    assert q["reference_total_price"] == pytest.approx(sum(ln["reference_subtotal"] for ln in q["lines"]), abs=0.011)
    assert q["saving"] == pytest.approx(q["reference_total_price"] - q["total_price"], abs=0.011)
    assert q["saving_share"] == pytest.approx(q["saving"] / q["reference_total_price"], abs=1e-3)
    assert q["sheet_status"] == "fresh" and q["warnings"] == [] and q["valid_until"] and q["valid_from"]
    assert all(ln["location"] == "unknown" for ln in q["lines"])


def test_max_interruption_risk_leaves_risky_offers_out(api_server):
    c = api_server.client()
    start = _spot_start(c)
    items = c.get("/v1/prices", params={"product": "spot", "gpu_model": "V100", "start_from": start, "limit": 1000}).json()
    risks = sorted(i["interruption_risk"] for i in items["items"] if i["start"] == start)
    cap = risks[1]
    allowed = sum(i["gpus_offered"] for i in items["items"] if i["start"] == start and i["interruption_risk"] <= cap)
    ask = {"gpu_model": "V100", "product": "spot", "start": start, "max_interruption_risk": cap}
    q = c.post("/v1/quotes", json={**ask, "gpus": allowed})
    assert q.status_code == 200, q.text
    assert all(ln["interruption_risk"] <= cap for ln in q.json()["lines"]) and q.json()["max_interruption_risk"] == cap
    r = c.post("/v1/quotes", json={**ask, "gpus": allowed + 1})
    assert r.status_code == 409 and r.json()["detail"]["available_gpus"] == allowed
    assert "interruption risk" in r.json()["message"]
    r = c.post("/v1/quotes", json={**ask, "gpus": 1, "max_interruption_risk": 0.0})
    assert r.status_code == 409 and "least_interruption_risk" in r.json()["detail"]


@pytest.mark.parametrize("path,query", [("/v1/prices", "limit=5&limit=6"), ("/v1/price-sheets", "limit=5&limit=6"),
                                        ("/v1/prices", "gpu_model="), ("/v1/prices", "product=,")])
def test_a_repeated_parameter_or_an_empty_filter_is_refused_not_guessed(api_server, path, query):
    r = api_server.client().get(f"{path}?{query}")
    assert r.status_code == 422 and r.json()["error"] == "invalid_request", (path, query, r.text)
    assert ("more than once" in r.json()["message"]) or ("is empty" in r.json()["message"])


def test_an_unencoded_plus_in_a_time_gets_a_hint(api_server):
    r = api_server.client().get("/v1/prices?start_from=2020-05-19T18:00:00+00:00")
    assert r.status_code == 422 and "%2B" in r.json()["message"], r.text
    assert api_server.client().get("/v1/prices?start_from=2020-05-19T18:00:00%2B00:00").status_code == 200


def test_head_works_on_every_sheet_route(api_server):
    c = api_server.client()
    for path in ("/v1/price-sheet", "/v1/price-sheet/1", "/v1/price-sheets"):
        get, head = c.get(path), c.head(path)
        assert head.status_code == get.status_code == 200 and head.content == b"", path
        assert head.headers.get("etag") == get.headers.get("etag"), path
    r = c.get("/v1/price-sheet/1")
    assert r.headers["idlecap-sheet-status"] in ("fresh", "expired") and r.headers["idlecap-sheet-version"] == "1"
