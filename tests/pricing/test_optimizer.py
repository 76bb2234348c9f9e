"""Spot + reserved offers end to end (pricing.engine.price_fleet on pricing.optimizer).

Forecast frames are built directly: per pool and hour seven non-crossing quantiles within
[0, capacity], drawn from a hypothesis-chosen seed and regime (uniform noise, multi-hour steps
with a spread, point masses, integer rounding). Every property is checked against the forecast
frame and the market given to the engine, not against the engine's own intermediate columns.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.base import QCOLS, QUANTILES
from pricing.demand import DemandModel
from pricing.engine import ITEM_COLS, price_fleet
from pricing.guardrails import FORCING
from pricing.optimizer import Market
from pricing.rules import DemandPrior, PricingRules

EPS = 1e-6
RULES = PricingRules()
DAY0 = pd.Timestamp("2025-03-03", tz="UTC")
GPU_MODELS = ["H100", "A100", "L4"]
AS_OF = pd.Timestamp("2025-02-01")
# the quantile function between the forecast's knots is linear (DESIGN: forecast frame -> distribution)
LEVELS = np.asarray(QUANTILES)


# ----------------------------------------------------------------------------- builders

def forecast_values(rng: np.random.Generator, cap: int, n: int, regime: str, integer: bool) -> np.ndarray:
    """(n, 7) non-crossing quantiles in [0, cap]."""
    if regime == "uniform":                       # independent random quantiles per hour
        q = np.sort(rng.uniform(0, cap, (n, 7)), axis=1)
    elif regime == "flat":                        # no uncertainty: every quantile the same, in steps
        q = np.repeat(_steps(rng, n, cap)[:, None], 7, axis=1)
    else:                                         # "steps": multi-hour levels with a random per-hour spread
        level = _steps(rng, n, cap)
        spread = rng.uniform(0, 0.2, n) * cap * rng.uniform(0, 1)
        z = np.array([-1.645, -1.2816, -0.6745, 0.0, 0.6745, 1.2816, 1.645])
        skew = rng.uniform(0.3, 1.7)
        z = np.where(z < 0, z * skew, z / skew)
        q = np.clip(level[:, None] + spread[:, None] * z[None, :], 0, cap)
    if integer:
        q = np.round(q)
    q = np.clip(np.maximum.accumulate(q, axis=1), 0, cap)
    assert (np.diff(q, axis=1) >= 0).all() and (q >= 0).all() and (q <= cap).all()
    return q


def _steps(rng: np.random.Generator, n: int, cap: int) -> np.ndarray:
    """Idle level in multi-hour steps on top of a stable base (what reserved terms can promise)."""
    base = rng.uniform(0, 0.8) * cap * (rng.uniform() < 0.7)
    out = np.empty(n)
    i = 0
    while i < n:
        length = int(rng.integers(3, 120))
        out[i:i + length] = base + rng.uniform(0, cap - base)
        i += length
    return out


def hourly_frame(pools: list[dict], start: pd.Timestamp, days: int = 32) -> pd.DataFrame:
    hours = pd.date_range(start, periods=24 * days, freq="h")
    frames = []
    for p in pools:
        q = p["q"][: len(hours)]
        f = pd.DataFrame(q, columns=QCOLS)
        f.insert(0, "ds", hours)
        f.insert(0, "unique_id", p["pool"])
        f["mean"] = q.mean(axis=1)
        f["gpus_total"] = p["cap"]
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def reference_rows(model: str, spot: float | None, reserved: float | None) -> list[dict]:
    rows = []
    if spot is not None:
        rows.append(dict(gpu_model=model, product_class="spot", provider="aws", region="us-east-1",
                         sku=f"{model.lower()}.spot", product="spot", usd_per_gpu_hour=spot, as_of=AS_OF))
    if reserved is not None:
        rows.append(dict(gpu_model=model, product_class="reserved", provider="azure", region="westeurope",
                         sku=f"{model.lower()}.od", product="on_demand", usd_per_gpu_hour=reserved, as_of=AS_OF))
    return rows


def make_market(pools: list[dict], refs: list[dict]) -> Market:
    p = pd.DataFrame([{k: d[k] for k in ("pool", "gpu_model", "region", "gpus_total", "floor")} for d in pools])
    cols = ["gpu_model", "product_class", "provider", "region", "sku", "product", "usd_per_gpu_hour", "as_of"]
    return Market(pools=p, references=pd.DataFrame(refs, columns=cols))


@st.composite
def scenarios(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    valid_from = DAY0 + pd.Timedelta(hours=draw(st.integers(0, 23)))
    n_pools = draw(st.integers(1, 3))
    refs_by_model = {}
    for m in GPU_MODELS:  # each reference class is missing now and then (-> no_reference)
        spot = None if draw(st.integers(0, 9)) == 0 else draw(st.floats(0.3, 6.0))
        res = None if draw(st.integers(0, 9)) == 0 else draw(st.floats(0.3, 9.0))
        refs_by_model[m] = (spot, res)
    pools = []
    for i in range(n_pools):
        cap = draw(st.integers(8, 512))
        model = draw(st.sampled_from(GPU_MODELS))
        # floors mostly well under the cheapest reference, sometimes above it (withdrawn items)
        known = [r for r in refs_by_model[model] if r is not None] or [1.0]
        frac = draw(st.floats(0.02, 0.7)) if draw(st.integers(0, 4)) else draw(st.floats(0.7, 2.0))
        floor = frac * min(known)
        regime = draw(st.sampled_from(["uniform", "steps", "steps", "steps", "flat"]))
        integer = draw(st.booleans())
        q = forecast_values(rng, cap, 24 * 32, regime, integer)
        pools.append(dict(pool=f"p{i}", gpu_model=model, region="eu-1", gpus_total=cap, floor=floor, cap=cap, q=q))
    refs = [r for m in sorted({p["gpu_model"] for p in pools}) for r in reference_rows(m, *refs_by_model[m])]
    prior = DemandPrior(draw(st.floats(0.5, 4.0)), draw(st.floats(0.05, 1.0)))
    return dict(valid_from=valid_from, pools=pools, refs=refs, prior=prior, seed=seed)


# ----------------------------------------------------------------------------- checks

def interp_q(hourly: pd.DataFrame, level: float) -> pd.DataFrame:
    """Quantile at `level` per (pool, hour), linear between the forecast's knots."""
    q = hourly[QCOLS].to_numpy(float)
    vals = np.array([np.interp(level, LEVELS, row) for row in q])
    return hourly[["unique_id", "ds"]].assign(v=vals).set_index(["unique_id", "ds"])["v"]


def reserved_held(items: pd.DataFrame, pool: str, hours: pd.DatetimeIndex) -> np.ndarray:
    """Offered reserved GPUs covering each hour (sum over every offered reserved item)."""
    held = np.zeros(len(hours))
    r = items[(items["pool"] == pool) & items["product"].str.startswith("reserved") & items["offered"]]
    for it in r.itertuples():
        held[(hours >= it.start) & (hours < it.end)] += it.gpus_offered
    return held


def ref_price(market: Market, model: str, cls: str) -> float:
    r = market.references
    r = r[(r["gpu_model"] == model) & (r["product_class"] == cls)]
    return float(r["usd_per_gpu_hour"].iloc[0]) if len(r) else np.nan


def check_items(items: pd.DataFrame, hourly: pd.DataFrame, market: Market, rules: PricingRules,
                valid_from: pd.Timestamp) -> None:
    assert list(items.columns) == ITEM_COLS
    pools = market.pools.set_index("pool")
    ceil_mult = 1 - rules.min_undercut
    q10 = interp_q(hourly, rules.reserved_max_quantile)
    q_spot = interp_q(hourly, rules.spot_offer_quantile)
    assert (q10.to_numpy() <= hourly["q10"].to_numpy() + 1e-12).all()
    for pool, grp in items.groupby("pool"):
        products = ["spot", *(rules.product(d) for d in rules.reserved_terms_days)]
        assert sorted(grp["product"].unique()) == sorted(products), pool
        assert (grp["product"] == "spot").sum() == rules.spot_days * 24 // rules.block_hours
    for it in items.itertuples():
        cls = "spot" if it.product == "spot" else "reserved"
        model = pools.loc[it.pool, "gpu_model"]
        ref = ref_price(market, model, cls)
        floor = pools.loc[it.pool, "floor"]
        ceiling = ceil_mult * ref
        # withdrawal reasons
        if not np.isfinite(ref):
            assert not it.offered and it.withdraw_reason == "no_reference", it
            continue
        assert it.reference_price == ref
        if floor > ceiling + EPS:
            assert not it.offered and it.withdraw_reason == "floor_above_ceiling", it
        if cls == "reserved" and np.isfinite(it.spot_expected_price) and it.spot_expected_price > ceiling + EPS:
            assert not it.offered and it.withdraw_reason == "floor_above_ceiling", it
        assert float(it.gpus_offered).is_integer() and it.gpus_offered >= 0
        if it.offered:
            assert it.withdraw_reason == ""
            assert it.start >= valid_from
            assert it.gpus_offered >= rules.min_gpus
            p = it.price_per_gpu_hour
            assert floor - EPS <= p <= ceiling + EPS, (it.pool, it.product, floor, p, ceiling)
            assert it.discount_vs_reference == pytest.approx(1 - p / ref)
            if cls == "reserved" and np.isfinite(it.spot_expected_price):
                assert p >= it.spot_expected_price - EPS
        else:
            assert it.withdraw_reason in {"no_reference", "forecast_too_short", "floor_above_ceiling", "no_capacity"}
            assert np.isnan(it.price_per_gpu_hour)
        if cls == "spot":
            r = it.interruption_risk
            if it.offered:
                assert np.isfinite(r) and 0.0 <= r <= 1.0, it
            else:
                assert np.isnan(r) or 0.0 <= r <= 1.0
        else:
            assert it.interruption_risk == 0.0

    # reserved: in every hour the offered reserved total stays within that hour's low quantile
    for pool in pools.index:
        f = hourly[hourly["unique_id"] == pool].set_index("ds")
        hours = pd.DatetimeIndex(f.index)
        held = reserved_held(items, pool, hours)
        res = items[(items["pool"] == pool) & items["product"].str.startswith("reserved") & items["offered"]]
        for it in res.itertuples():  # the forecast covers every reserved window
            assert ((hours >= it.start) & (hours < it.end)).sum() == it.hours
        bad = held > f[f"q{int(rules.reserved_max_quantile * 100):02d}"].to_numpy() + EPS
        assert not bad.any(), (pool, hours[bad][:3], held[bad][:3])
        assert (held <= q10.loc[pool].reindex(hours).to_numpy() + EPS).all()
        # spot: spot GPUs + reserved held in the block <= the block's minimum spot-offer quantile
        qs = q_spot.loc[pool].reindex(hours).to_numpy()
        for it in items[(items["pool"] == pool) & (items["product"] == "spot")].itertuples():
            block = (hours >= it.start) & (hours < it.end)
            assert block.sum() == rules.block_hours
            assert it.gpus_offered + held[block].max() <= qs[block].min() + EPS, (pool, it.start)


def check_max_change(items: pd.DataFrame, last: pd.DataFrame, rules: PricingRules) -> None:
    given_last = last.set_index(["pool", "product", "start"])["price_per_gpu_hour"]
    for it in items[items["offered"]].itertuples():
        lp = given_last[(it.pool, it.product, it.start)]
        assert it.last_price == pytest.approx(lp, rel=1e-12)
        change = abs(it.price_per_gpu_hour / lp - 1)
        if change > rules.max_daily_change + 1e-9:
            assert set(it.guardrails) & FORCING, (it.pool, it.product, it.start, lp, it.price_per_gpu_hour,
                                                  it.guardrails)


# ----------------------------------------------------------------------------- properties

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_price_fleet_properties(sc):
    vf = sc["valid_from"]
    hourly = hourly_frame(sc["pools"], vf)
    market = make_market(sc["pools"], sc["refs"])
    demand = DemandModel(prior=sc["prior"]).fit(None)
    first = price_fleet(hourly, market, RULES, demand, vf)
    check_items(first, hourly, market, RULES, vf)

    # a last sheet with a random price for every (pool, product, start) the engine will price
    rng = np.random.default_rng(sc["seed"] + 1)
    last = first[["pool", "product", "start"]].copy()
    anchor = first["reference_price"].fillna(1.0).to_numpy()
    last["price_per_gpu_hour"] = anchor * rng.uniform(0.2, 1.3, len(last))
    second = price_fleet(hourly, market, RULES, demand, vf, last=last)
    check_items(second, hourly, market, RULES, vf)
    check_max_change(second, last, RULES)
    # quantities and risks do not depend on prices
    pd.testing.assert_series_equal(first["gpus_offered"], second["gpus_offered"])
    pd.testing.assert_series_equal(first["interruption_risk"], second["interruption_risk"])


# ----------------------------------------------------------------------------- hand examples

def _one_pool(value: float, cap: int = 64, floor: float = 0.5, spot: float = 3.0, reserved: float = 4.0,
              start: pd.Timestamp = DAY0):
    q = np.full((24 * 33, 7), value)
    pools = [dict(pool="p1", gpu_model="H100", region="eu-1", gpus_total=cap, floor=floor, cap=cap, q=q)]
    hourly = hourly_frame(pools, start.floor("D"), days=33)
    return hourly, make_market(pools, reference_rows("H100", spot, reserved))


def test_constant_forecast_longest_term_takes_the_base():
    """40 of 64 GPUs idle in every hour with certainty (all quantiles = 40).

    Every window's low quantile is 40, so k_1d = k_7d = k_30d = 40. Terms are nested tranches:
    the 30-day term takes the stable base (40) and shorter terms only what their window adds on top
    (40 - 40 = 0), so 1d and 7d offer 0 GPUs (withdrawn: no_capacity) and every hour holds 40
    reserved. Spot offers the block's 20% quantile (40) minus reserved held (40) = 0 in each block
    inside the 30-day window. With no spot sold the reserved parity is absent; the 30-day price is
    where demand (prior: 0.25 x 64 x (p/ref)^-2) clears 40 GPUs: ref x sqrt(16/40).
    """
    hourly, market = _one_pool(40.0)
    items = price_fleet(hourly, market, RULES, DemandModel().fit(None), DAY0)
    check_items(items, hourly, market, RULES, DAY0)
    res = items[items["product"] != "spot"].set_index("product")
    assert res.loc["reserved_30d", "gpus_offered"] == 40 and res.loc["reserved_30d", "offered"]
    for prod in ("reserved_1d", "reserved_7d"):
        assert res.loc[prod, "gpus_offered"] == 0
        assert not res.loc[prod, "offered"] and res.loc[prod, "withdraw_reason"] == "no_capacity"
    assert res.loc["reserved_30d", "price_per_gpu_hour"] == pytest.approx(4.0 * np.sqrt(16 / 40))
    assert res.loc["reserved_30d", "guardrails"] == []
    spot = items[items["product"] == "spot"]
    assert (spot["gpus_offered"] == 0).all() and (spot["withdraw_reason"] == "no_capacity").all()


@pytest.mark.parametrize("value", [40.0, 48.0, 25.0, 3.0])
def test_constant_forecast_spot_before_reserved_starts(value):
    """valid_from at noon: reserved starts at the next midnight, so the 12-18 and 18-24 spot blocks
    hold no reserved GPUs and offer all `value` idle GPUs; idle never falls under `value`, so
    their interruption risk is exactly 0. Blocks from midnight on are all reserved (0 spot)."""
    vf = DAY0 + pd.Timedelta(hours=12)
    hourly, market = _one_pool(value, start=vf)
    items = price_fleet(hourly, market, RULES, DemandModel().fit(None), vf)
    check_items(items, hourly, market, RULES, vf)
    spot = items[items["product"] == "spot"].sort_values("start")
    before = spot[spot["start"] < DAY0 + pd.Timedelta(days=1)]
    assert len(before) == 2
    assert (before["gpus_offered"] == value).all() and before["offered"].all()
    assert (before["interruption_risk"] == 0.0).all(), before["interruption_risk"].tolist()
    after = spot[spot["start"] >= DAY0 + pd.Timedelta(days=1)]
    assert (after["gpus_offered"] == 0).all()
    res = items[items["product"] == "reserved_30d"].iloc[0]
    assert res["gpus_offered"] == value and res["start"] == DAY0 + pd.Timedelta(days=1)


def test_floor_above_ceiling_and_missing_reference():
    rng = np.random.default_rng(3)
    q = forecast_values(rng, 128, 24 * 32, "steps", True)
    pools = [
        dict(pool="cheap", gpu_model="H100", region="eu-1", gpus_total=128, floor=0.5, cap=128, q=q),
        dict(pool="costly", gpu_model="H100", region="eu-1", gpus_total=128, floor=3.5, cap=128, q=q),
        dict(pool="noref", gpu_model="L4", region="eu-1", gpus_total=128, floor=0.1, cap=128, q=q),
        dict(pool="nores", gpu_model="A100", region="eu-1", gpus_total=128, floor=0.1, cap=128, q=q),
    ]
    refs = reference_rows("H100", 3.0, 6.0) + reference_rows("A100", 2.0, None)
    market = make_market(pools, refs)
    hourly = hourly_frame(pools, DAY0)
    items = price_fleet(hourly, market, RULES, DemandModel().fit(None), DAY0)
    check_items(items, hourly, market, RULES, DAY0)
    costly_spot = items[(items["pool"] == "costly") & (items["product"] == "spot")]
    # floor 3.5 > 0.9 x 3.0 spot reference: every spot block withdrawn, none offered
    assert (~costly_spot["offered"]).all() and (costly_spot["withdraw_reason"] == "floor_above_ceiling").all()
    noref = items[items["pool"] == "noref"]
    assert (~noref["offered"]).all() and (noref["withdraw_reason"] == "no_reference").all()
    nores = items[items["pool"] == "nores"]
    assert (nores.loc[nores["product"] != "spot", "withdraw_reason"] == "no_reference").all()
    assert nores.loc[nores["product"] == "spot", "offered"].any()
    assert items.loc[items["pool"] == "cheap", "offered"].any()


# ----------------------------------------------------------------------------- holds

def _two_pools(seed: int, start: pd.Timestamp, days: int = 33):
    rng = np.random.default_rng(seed)
    pools = [dict(pool=f"p{i}", gpu_model="H100", region="eu-1", gpus_total=cap, floor=0.4, cap=cap,
                  q=forecast_values(rng, cap, 24 * days, "steps", True)) for i, cap in ((1, 96), (2, 200))]
    return hourly_frame(pools, start, days), make_market(pools, reference_rows("H100", 3.0, 5.0))


def test_hold_keeps_the_last_sheets_future_items():
    demand = DemandModel().fit(None)
    hourly, market = _two_pools(7, DAY0)
    prev = price_fleet(hourly, market, RULES, demand, DAY0)
    last = prev[prev["offered"]].reset_index(drop=True)
    assert (last["pool"] == "p1").any()

    vf = DAY0 + pd.Timedelta(days=1)
    items = price_fleet(hourly, market, RULES, demand, vf, last=last, hold={"p1": "stale_telemetry"})
    got = items[items["pool"] == "p1"].sort_values(["product", "start"]).reset_index(drop=True)
    want = last[(last["pool"] == "p1") & (last["start"] >= vf)].sort_values(["product", "start"]).reset_index(drop=True)
    assert len(got) == len(want) > 0
    assert got["offered"].all() and (got["withdraw_reason"] == "").all()
    for c in ("product", "start", "end", "price_per_gpu_hour", "gpus_offered", "reference_price", "floor"):
        pd.testing.assert_series_equal(got[c], want[c], check_dtype=False, check_names=False)
    for g_new, g_old in zip(got["guardrails"], want["guardrails"]):
        assert g_new == list(g_old) + ["hold_last:stale_telemetry"]
    # the other pool is priced afresh for the new valid_from
    p2 = items[items["pool"] == "p2"]
    assert p2["start"].min() >= vf and len(p2) == 28 + 3
    assert not any(any(g.startswith("hold_last") for g in gs) for gs in p2["guardrails"])


def test_hold_without_last_sheet_withdraws_the_pool():
    demand = DemandModel().fit(None)
    hourly, market = _two_pools(8, DAY0)
    for last in (None, pd.DataFrame(columns=ITEM_COLS)):
        items = price_fleet(hourly, market, RULES, demand, DAY0, last=last, hold={"p1": "forecast_not_finite"})
        p1 = items[items["pool"] == "p1"]
        assert len(p1) >= 1 and (~p1["offered"].astype(bool)).all()
        assert all(r.startswith("hold_without_last_sheet") for r in p1["withdraw_reason"])
        assert p1["price_per_gpu_hour"].isna().all()
        assert items.loc[items["pool"] == "p2", "offered"].any()


@pytest.mark.parametrize("unit", ["s", "ms", "ns"])
def test_last_sheet_at_another_timestamp_resolution(unit):
    """pandas 3 keeps each timestamp's own resolution (s/ms/us/ns); a last sheet read back from
    another store, or a valid_from built another way, must still match item for item."""
    demand = DemandModel().fit(None)
    hourly, market = _two_pools(9, DAY0)
    prev = price_fleet(hourly, market, RULES, demand, DAY0)
    last = prev[prev["offered"]].reset_index(drop=True)
    vf = DAY0 + pd.Timedelta(days=1)
    want = price_fleet(hourly, market, RULES, demand, vf, last=last)
    assert want["last_price"].notna().any()
    other = last.assign(start=last["start"].dt.as_unit(unit), end=last["end"].dt.as_unit(unit))
    for kw in (dict(valid_from=vf, last=other), dict(valid_from=vf.as_unit(unit), last=last)):
        got = price_fleet(hourly, market, RULES, demand, kw["valid_from"], last=kw["last"])
        np.testing.assert_array_equal(got["last_price"].to_numpy(), want["last_price"].to_numpy())
        np.testing.assert_array_equal(got["price_per_gpu_hour"].to_numpy(), want["price_per_gpu_hour"].to_numpy())


def test_every_pool_held_and_pools_with_only_started_items():
    demand = DemandModel().fit(None)
    hourly, market = _two_pools(7, DAY0)
    prev = price_fleet(hourly, market, RULES, demand, DAY0)
    last = prev[prev["offered"]].reset_index(drop=True)
    # every pool held, long after the last sheet: nothing to keep, each pool says why
    later = DAY0 + pd.Timedelta(days=40)
    items = price_fleet(hourly, market, RULES, demand, later, last=last, hold={"p1": "stale_telemetry",
                                                                                "p2": "forecast_not_finite"})
    assert not items["offered"].astype(bool).any()
    assert dict(zip(items["pool"], items["withdraw_reason"])) == {
        "p1": "hold_no_future_items:stale_telemetry", "p2": "hold_no_future_items:forecast_not_finite"}
    # no last sheet and everything held: an empty frame, not a crash
    none = price_fleet(hourly, market, RULES, demand, DAY0, hold={"p1": "x", "p2": "y"})
    assert set(none["withdraw_reason"]) == {"hold_without_last_sheet:x", "hold_without_last_sheet:y"}


def test_zero_floor_still_prices_spot():
    hourly, market = _one_pool(40.0, floor=0.0)
    items = price_fleet(hourly, market, RULES, DemandModel().fit(None), DAY0 + pd.Timedelta(hours=1))
    spot = items[items["product"] == "spot"]
    assert not (spot["withdraw_reason"] == "floor_above_ceiling").any()
    assert spot["offered"].any() and (spot.loc[spot["offered"], "price_per_gpu_hour"] > 0).all()


def test_hourly_reruns_cannot_compound_the_daily_limit():
    """Against a fixed day-ago anchor, any number of re-runs stays within +-max_daily_change of it."""
    demand = DemandModel().fit(None)
    hourly, market = _two_pools(11, DAY0)
    first = price_fleet(hourly, market, RULES, demand, DAY0)
    anchor = first[first["offered"]].assign(price_per_gpu_hour=lambda d: d["price_per_gpu_hour"] * 0.5)
    last = anchor
    for k in range(1, 5):
        items = price_fleet(hourly, market, RULES, demand, DAY0 + pd.Timedelta(hours=k), last=last, anchor=anchor)
        last = items[items["offered"]]
    j = last.merge(anchor[["pool", "product", "start", "price_per_gpu_hour"]], on=["pool", "product", "start"],
                   suffixes=("", "_anchor"))
    free = ~j["guardrails"].map(lambda g: bool(set(g) & FORCING))
    ratio = (j["price_per_gpu_hour"] / j["price_per_gpu_hour_anchor"])[free]
    assert len(ratio) and (ratio <= 1 + RULES.max_daily_change + 1e-9).all()


def test_booked_leases_are_not_sold_again():
    """40 of 64 idle; 10 GPUs already leased for days 1-3 (telemetry cannot show future leases):
    the 30-day tranche may promise only 30, and the leased hours offer no spot on top."""
    hourly, market = _one_pool(40.0)
    start = DAY0.ceil("D")
    booked = pd.DataFrame({"pool": ["p1"], "start": [start], "end": [start + pd.Timedelta(days=3)], "gpus_offered": [10]})
    items = price_fleet(hourly, market, RULES, DemandModel().fit(None), DAY0, booked=booked)
    res = items[items["product"] != "spot"].set_index("product")
    assert res.loc["reserved_30d", "gpus_offered"] == 30
    assert res.loc[["reserved_1d", "reserved_7d"], "gpus_offered"].sum() == 0
    spot = items[(items["product"] == "spot") & items["offered"]]
    assert spot.empty or (spot["start"] >= start + pd.Timedelta(days=3)).all() or (spot["gpus_offered"] <= 0).all()
