"""api.quotes: cheapest capacity first, whole periods covered, clear refusals."""
from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from api.quotes import CapacityShort, QuoteAsk, QuoteInvalid, quote
from api.store import load_sheet, parse_ts
from pricing.sheet import sheet_name

from api_helpers import publish_sheet

NOW = pd.Timestamp("2026-01-05 10:00", tz="UTC")


@pytest.fixture(scope="module")
def sheet(tmp_path_factory):
    d = tmp_path_factory.mktemp("q")
    publish_sheet(d, 1, NOW)
    return load_sheet(d / f"{sheet_name(1)}.json")


def _spot(sheet, model="V100", k=0):
    starts = sorted({parse_ts(i["start"]) for i in sheet.items if i["product"] == "spot" and i["gpu_model"] == model})
    return starts[k]


def test_draws_cheapest_first_and_totals_add_up(sheet):
    start = _spot(sheet)
    offered = sorted((i for i in sheet.items if i["product"] == "spot" and i["gpu_model"] == "V100"
                      and parse_ts(i["start"]) == start), key=lambda i: i["price_per_gpu_hour"])
    want = offered[0]["gpus_offered"] + 1  # needs the cheapest pool and one GPU of the next
    q = quote(sheet, QuoteAsk("V100", "spot", start, want))
    assert [ln["pool"] for ln in q["lines"]] == [offered[0]["pool"], offered[1]["pool"]]
    assert [ln["gpus"] for ln in q["lines"]] == [offered[0]["gpus_offered"], 1]
    assert q["total_price"] == pytest.approx(sum(ln["subtotal"] for ln in q["lines"]), abs=0.011)
    assert q["total_price"] == pytest.approx(6 * (offered[0]["gpus_offered"] * offered[0]["price_per_gpu_hour"]
                                                  + offered[1]["price_per_gpu_hour"]), abs=0.011)
    assert q["gpu_hours"] == 6 * want and q["sheet_version"] == 1


def test_spot_hours_span_consecutive_blocks(sheet):
    start = _spot(sheet)
    q = quote(sheet, QuoteAsk("V100", "spot", start, 3, hours=18))
    blocks = sorted({ln["start"] for ln in q["lines"]})
    assert len(blocks) == 3 and q["end"] == (start + timedelta(hours=18)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for b in blocks:
        assert sum(ln["gpus"] for ln in q["lines"] if ln["start"] == b) == 3
    with pytest.raises(QuoteInvalid, match="6-hour blocks"):
        quote(sheet, QuoteAsk("V100", "spot", start, 1, hours=7))


def test_any_offset_is_answered_in_utc(sheet):
    from datetime import timezone as tz

    start = _spot(sheet)
    local = start.astimezone(tz(timedelta(hours=2)))
    q = quote(sheet, QuoteAsk("V100", "spot", local, 2, hours=12))
    assert q["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ") == q["lines"][0]["start"]
    assert q["end"] == (start + timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_past_the_horizon_is_refused_at_once(sheet):
    with pytest.raises(CapacityShort, match="go past it") as e:
        quote(sheet, QuoteAsk("V100", "spot", _spot(sheet), 1, hours=6 * 9000))
    assert e.value.detail["available_gpus"] == 0


def test_reserved_is_one_term(sheet):
    start = parse_ts(next(i["start"] for i in sheet.items if i["product"] == "reserved_7d"))
    q = quote(sheet, QuoteAsk("V100", "reserved_7d", start, 2))
    assert q["gpu_hours"] == 2 * 168
    with pytest.raises(QuoteInvalid, match="168-hour term"):
        quote(sheet, QuoteAsk("V100", "reserved_7d", start, 2, hours=24))


def test_not_enough_capacity_says_how_much_there_is(sheet):
    start = _spot(sheet)
    total = sum(i["gpus_offered"] for i in sheet.items if i["product"] == "spot" and i["gpu_model"] == "V100"
                and parse_ts(i["start"]) == start)
    with pytest.raises(CapacityShort) as e:
        quote(sheet, QuoteAsk("V100", "spot", start, total + 1))
    assert e.value.detail["available_gpus"] == total and e.value.detail["requested_gpus"] == total + 1
    with pytest.raises(CapacityShort, match="offers no spot B200"):
        quote(sheet, QuoteAsk("B200", "spot", start, 1))
    with pytest.raises(QuoteInvalid, match="not a spot start") as bad:  # off the block grid: an input error
        quote(sheet, QuoteAsk("V100", "spot", start + timedelta(hours=1), 1))
    assert bad.value.code == "invalid_start" and _spot(sheet).strftime("%Y-%m-%dT%H:%M:%SZ") in bad.value.detail["valid_starts"]
    with pytest.raises(CapacityShort, match="no single pool"):
        quote(sheet, QuoteAsk("V100", "spot", start, 17, single_pool=True))  # pools offer 8, 4, 16


def test_single_pool_picks_the_cheapest_pool_that_fits(sheet):
    start = _spot(sheet)
    q = quote(sheet, QuoteAsk("V100", "spot", start, 5, hours=12, single_pool=True))
    assert {ln["pool"] for ln in q["lines"]} <= {"p1", "p3"} and len({ln["pool"] for ln in q["lines"]}) == 1


@settings(max_examples=60, deadline=None)
@given(gpus=st.integers(1, 40), blocks=st.integers(1, 4), k=st.integers(0, 3), region=st.sampled_from([None, "dc1", "dc2"]))
def test_quote_properties(sheet, gpus, blocks, k, region):
    """Either every period gets exactly `gpus` from items that offer them, or the refusal is justified."""
    start = _spot(sheet, k=k)
    ask = QuoteAsk("V100", "spot", start, gpus, hours=6 * blocks, region=region)
    try:
        q = quote(sheet, ask)
    except CapacityShort as e:
        assert e.detail.get("available_gpus", 0) < gpus or "offered_starts" in e.detail
        return
    by_item = {(i["pool"], i["start"]): i for i in sheet.items if i["product"] == "spot"}
    for ln in q["lines"]:
        it = by_item[(ln["pool"], ln["start"])]
        assert 0 < ln["gpus"] <= it["gpus_offered"] and ln["price_per_gpu_hour"] == it["price_per_gpu_hour"]
        assert region is None or ln["region"] == region
    for b in range(blocks):
        s = (start + timedelta(hours=6 * b)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert sum(ln["gpus"] for ln in q["lines"] if ln["start"] == s) == gpus


def test_a_class_or_the_fleet_name_both_quote(tmp_path):
    """Customers may ask by catalogue class (H100) or by the fleet's own GPU name."""
    from api_helpers import engine_items, forecast_frame
    from pricing.sheet import PriceSheet, public_items, publish

    items = engine_items(NOW)
    h = items["gpu_model"] == "H100"
    items.loc[h, "gpu_model"] = "NVIDIA H100 80GB HBM3"
    sheet = PriceSheet(version=1, generated_at=NOW, valid_from=NOW, valid_until=NOW + pd.Timedelta(hours=24),
                       data_through=NOW, mlflow_run_id="r", forecast_id="f", items=public_items(items))
    publish(sheet, tmp_path, forecast=forecast_frame(NOW))
    s = load_sheet(tmp_path / f"{sheet_name(1)}.json")
    start = min(parse_ts(i["start"]) for i in s.items if i["product"] == "spot" and i["gpu_class"] == "H100")
    by_class = quote(s, QuoteAsk("H100", "spot", start, 2))
    by_name = quote(s, QuoteAsk("NVIDIA H100 80GB HBM3", "spot", start, 2))
    assert [ln["pool"] for ln in by_class["lines"]] == [ln["pool"] for ln in by_name["lines"]] == ["p4"]
    assert by_class["total_price"] == by_name["total_price"]
    # GET /v1/prices?gpu_model= filters by either spelling too (the fast path's pager)
    import orjson

    from api.fastpath import PricesPager
    from api.store import SheetStore

    store = SheetStore(tmp_path)
    store.refresh()
    pager = PricesPager(store, page_size=1000)
    for name in ("H100", "NVIDIA H100 80GB HBM3"):
        body = orjson.loads(pager.reply(f"gpu_model={name.replace(' ', '%20')}".encode()).body)
        assert body["total"] == int(h.sum()) and {i["pool"] for i in body["items"]} == {"p4"}


def test_an_item_without_a_price_is_not_quoted(tmp_path):
    """A null price (what the sheet writer puts for a non-finite one) is a withdrawn offer, not a 500."""
    import json

    publish_sheet(tmp_path, 1, NOW)
    path = tmp_path / f"{sheet_name(1)}.json"
    doc = json.loads(path.read_text())
    start = min(i["start"] for i in doc["items"] if i["product"] == "spot" and i["gpu_model"] == "V100")
    here = [i for i in doc["items"] if i["product"] == "spot" and i["gpu_model"] == "V100" and i["start"] == start]
    cheapest = min(here, key=lambda i: i["price_per_gpu_hour"])
    cheapest["price_per_gpu_hour"] = None
    path.write_text(json.dumps(doc))
    sheet = load_sheet(path)
    q = quote(sheet, QuoteAsk("V100", "spot", parse_ts(start), 1))
    assert q["lines"][0]["pool"] != cheapest["pool"] and q["lines"][0]["price_per_gpu_hour"] > 0


def test_the_average_price_is_never_above_the_prices_drawn(sheet):
    """Cents are rounded on the total only: the average comes from the exact amounts."""
    start = _spot(sheet)
    for gpus in range(1, 6):
        q = quote(sheet, QuoteAsk("V100", "spot", start, gpus))
        prices = [ln["price_per_gpu_hour"] for ln in q["lines"]]
        assert min(prices) - 1e-4 <= q["average_price_per_gpu_hour"] <= max(prices) + 1e-4


def test_a_cap_per_line_warns_when_the_whole_lease_is_riskier(sheet):
    start = _spot(sheet)
    q = quote(sheet, QuoteAsk("V100", "spot", start, 2, hours=24, max_interruption_risk=0.99))
    assert all(ln["interruption_risk"] <= 0.99 for ln in q["lines"])
    cap = q["interruption_risk"] - 1e-3  # a cap every line meets but the lease as a whole does not
    assert q["max_line_interruption_risk"] <= cap  # four blocks: the lease is riskier than any one of them
    q = quote(sheet, QuoteAsk("V100", "spot", start, 2, hours=24, max_interruption_risk=round(cap, 4)))
    assert any("caps each line" in w for w in q["warnings"]), q["warnings"]
    q = quote(sheet, QuoteAsk("V100", "spot", start, 2, hours=24, max_interruption_risk=1.0))
    assert not any("caps each line" in w for w in q["warnings"])


def test_an_off_grid_start_is_echoed_as_sent(sheet):
    start = _spot(sheet) + timedelta(milliseconds=500)
    with pytest.raises(QuoteInvalid) as e:
        quote(sheet, QuoteAsk("V100", "spot", start, 1))
    assert ":00.500000Z is not a spot start" in str(e.value)
