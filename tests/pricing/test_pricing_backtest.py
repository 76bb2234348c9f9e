"""The pricing backtest on a synthetic fleet: scores are shares, the naive policy is scored alike."""
from __future__ import annotations

import numpy as np
import pandas as pd

from conftest import fleet_frames
from models.naive import SeasonalNaive
from pricing.backtest import backtest_origins, pricing_backtest
from pricing.demand import DemandModel
from pricing.optimizer import Market
from pricing.rules import PricingRules


def _market(df: pd.DataFrame) -> Market:
    pools = df.groupby("unique_id").agg(gpu_model=("gpu_model", "last"), gpus_total=("gpus_total", "max"))
    pools = pools.reset_index().rename(columns={"unique_id": "pool"}).assign(region="dc1", floor=0.1)
    refs = []
    for g in pools["gpu_model"].unique():
        refs += [dict(gpu_model=g, product_class="spot", provider="aws", region="r", sku="s", product="spot",
                      usd_per_gpu_hour=1.0, as_of=pd.Timestamp("2025-11-30")),
                 dict(gpu_model=g, product_class="reserved", provider="aws", region="r", sku="r", product="on_demand",
                      usd_per_gpu_hour=3.0, as_of=pd.Timestamp("2025-11-30"))]
    return Market(pools, pd.DataFrame(refs))


def test_origins_leave_room_for_the_window_and_training() -> None:
    df, _ = fleet_frames(pools=2, days=20)
    o = backtest_origins(df, lead_hours=6, max_term_days=7, n_windows=50)
    end = df["ds"].max() + pd.Timedelta(hours=1)
    assert o and all(x.hour == 18 for x in o)
    assert all(x + pd.Timedelta(hours=6) + pd.Timedelta(days=7) <= end for x in o)
    assert min(o) >= df["ds"].min() + pd.Timedelta(days=7)


def test_pricing_backtest_scores_both_policies_on_what_happened() -> None:
    df, cal = fleet_frames(pools=4, days=24, seed=2)
    rules = PricingRules(reserved_terms_days=(1, 7), term_discount={1: 0.0, 7: 0.05})
    rep = pricing_backtest(SeasonalNaive(24), df, cal, _market(df), rules, DemandModel().fit(None),
                           lead_hours=6, n_windows=4)
    s = rep.summary.set_index(["policy", "term"])
    assert {("idlecap", "all"), ("naive", "all")} <= set(s.index)
    for col in ("safety", "yield"):
        v = s[col].dropna()
        assert ((v >= 0) & (v <= 1.0 + 1e-9)).all() if col == "safety" else (v >= 0).all()
    off = rep.offers
    # safe GPU-hours never exceed offered ones, and an offer's safe part is what the real minimum allowed
    assert (off["safe_gpu_hours"] <= off["offered_gpu_hours"] + 1e-9).all()
    chk = off[off["gpus_offered"] > 0].iloc[0]
    assert np.isclose(chk["safe_gpu_hours"], np.clip(chk["real_min"] - chk["base"], 0, chk["gpus_offered"]) * chk["hours"])
    # the low-quantile + drawdown rule is at least as safe as offering the mean
    if s.loc[("idlecap", "all"), "offered_gpu_hours"] > 0:
        assert s.loc[("idlecap", "all"), "safety"] >= s.loc[("naive", "all"), "safety"]
    assert len(rep.origins) == 4


def test_all_yield_uses_each_origins_longest_window() -> None:
    from pricing.backtest import summarize

    t0, t1 = pd.Timestamp("2026-01-10", tz="UTC"), pd.Timestamp("2026-01-11", tz="UTC")
    rows = [  # origin 0 has 1d and 7d windows, origin 1 only 1d; every window half offered
        dict(origin=t0, pool="p", term_days=7, start=t0, end=t0 + pd.Timedelta(days=7), real_idle_gpu_hours=1680.0),
        dict(origin=t0, pool="p", term_days=1, start=t0, end=t0 + pd.Timedelta(days=1), real_idle_gpu_hours=240.0),
        dict(origin=t1, pool="p", term_days=1, start=t1, end=t1 + pd.Timedelta(days=1), real_idle_gpu_hours=240.0),
    ]
    off = pd.DataFrame(rows).assign(policy="idlecap", gpus_offered=1, safe_gpu_hours=0.0, revenue_gross=0.0,
                                    penalties=0.0, revenue_net=0.0)
    off["offered_gpu_hours"] = [840.0, 0.0, 120.0]
    s = summarize(off, pd.DataFrame()).set_index("term")
    assert np.isclose(s.loc["7d", "yield"], 0.5) and np.isclose(s.loc["all", "yield"], (840 + 120) / (1680 + 240))


def test_safety_is_judged_at_sample_level_and_the_oracle_nests_terms() -> None:
    """A 1-day promise of 5 GPUs in a window whose hourly means never drop below 6 but one sample
    drops to 2: safe on hourly means, broken at sample level. The hindsight oracle promises the
    floor of each window's sample minimum, longest term at the bottom."""
    from pricing.backtest import _score, oracle_gpu_hours, summarize
    from pricing.demand import DemandModel
    from pricing.rules import DemandPrior, PricingRules

    t0 = pd.Timestamp("2026-01-10", tz="UTC")
    ds = pd.date_range(t0, periods=24 * 7, freq="h")
    y = np.full(len(ds), 8.0)
    y_min = y.copy()
    y_min[30] = 2.0                    # day 2: one sample with 2 idle, the hour's mean still 6
    y[30] = 6.0
    y_min[5] = 6.5                     # day 1: fewest 6.5 at a sample
    actual = pd.DataFrame({"unique_id": "p", "ds": ds, "y": y, "y_min": y_min})
    off = pd.DataFrame([dict(origin=t0, pool="p", gpu_model="V100", product=f"reserved_{d}d", term_days=d, start=t0,
                             end=t0 + pd.Timedelta(days=d), hours=24 * d, gpus_offered=k, price_per_gpu_hour=1.0,
                             reference_price=2.0, gpus_total=16.0)
                        for d, k in ((7, 5), (1, 1))])
    scored = _score(off, actual, PricingRules(), DemandModel(DemandPrior(2.0, 0.25)))
    scored["oracle_gpu_hours"] = oracle_gpu_hours(scored)
    s7 = scored[scored["term_days"] == 7].iloc[0]
    s1 = scored[scored["term_days"] == 1].iloc[0]
    assert s7["real_min"] == 2.0 and s7["real_min_hourly"] == 6.0 and bool(s7["sample_level"])
    assert s7["safe_gpu_hours"] == 2 * 168 and s7["safe_gpu_hours_hourly"] == 5 * 168  # 5 promised, 2 held at a sample
    assert s1["safe_gpu_hours"] == 1 * 24  # the 1d tranche sits on the 7d base of 5: 6.5 - 5 >= 1
    # oracle: 7d floor(2) = 2 GPUs for 168 h; 1d floor(6.5) = 6 in all, so 4 more for 24 h
    assert s7["oracle_gpu_hours"] == 2 * 168 and s1["oracle_gpu_hours"] == 4 * 24
    summ = summarize(scored.assign(policy="idlecap"), pd.DataFrame()).set_index("term")
    assert np.isclose(summ.loc["all", "achievable"], (5 * 168 + 24) / (2 * 168 + 4 * 24))
    assert np.isclose(summ.loc["all", "safety"], (2 * 168 + 24) / (5 * 168 + 24))
    assert np.isclose(summ.loc["all", "safe_achievable"], (2 * 168 + 24) / (2 * 168 + 4 * 24))
    assert summ.loc["all", "safety_hourly"] > summ.loc["all", "safety"]
    # per term: the whole promise standing in the window (1d: 5 under it + 1) against its floor (6)
    assert np.isclose(summ.loc["1d", "achievable"], 6 / 6) and np.isclose(summ.loc["1d", "safe_achievable"], 6 / 6)
    assert np.isclose(summ.loc["7d", "achievable"], 5 / 2) and np.isclose(summ.loc["7d", "safe_achievable"], 2 / 2)
    assert (summ[["safe_achievable"]] <= 1 + 1e-9).all().all()


def test_the_oracle_ignores_windows_that_are_not_scored(monkeypatch) -> None:
    """A 7-day window mostly blacked out is skipped; the 1-day window inside it is judged against
    its own floor, not against a nesting with the skipped one."""
    from pricing.backtest import MIN_OBSERVED, oracle_gpu_hours

    t0 = pd.Timestamp("2026-01-10", tz="UTC")
    rows = pd.DataFrame([dict(origin=t0, pool="p", term_days=7, hours=168, real_min=1.0, observed=0.29),
                         dict(origin=t0, pool="p", term_days=1, hours=24, real_min=5.0, observed=1.0)])
    kept = rows[rows["observed"] >= MIN_OBSERVED]
    assert oracle_gpu_hours(kept).tolist() == [5 * 24]
    assert oracle_gpu_hours(rows).tolist() == [1 * 168, 4 * 24]  # nesting both would cut the 1d window to 4


def test_risk_model_backtest_reports_a_target_curve_chosen_on_early_origins(fleet_with_plan) -> None:
    from models.window_risk import WindowRiskModel
    from pricing.backtest import by_pool_size, choose_target, target_curve

    df, cal = fleet_with_plan
    df = df.assign(gpu_model=df["unique_id"].str.split("-").str[-1].str.upper())
    rules = PricingRules(reserved_terms_days=(1, 7), term_discount={1: 0.0, 7: 0.05})
    rep = pricing_backtest(SeasonalNaive(24), df, cal, _market(df), rules, DemandModel().fit(None), lead_hours=6,
                           n_windows=4, risk_model=WindowRiskModel(history_days=20), targets=(0.01, 0.05, 0.2))
    idl = rep.offers[rep.offers["policy"] == "idlecap"]
    assert idl["gpus_offered"].sum() > 0  # the calendar fleet sells reserved capacity
    # sizing at a looser target never offers less, origin by origin
    per = rep.curve.groupby(["target", "origin"])["offered_gpu_hours"].sum().unstack("target")
    assert (per[0.05] >= per[0.01] - 1e-9).all() and (per[0.2] >= per[0.05] - 1e-9).all()
    curve = target_curve(rep.curve, rep.origins)
    assert set(curve["origins"]) == {"early", "later", "all"}
    chosen = choose_target(curve, 0.0)
    early = curve[curve["origins"] == "early"].set_index("target")
    assert early.loc[chosen, "offered_gpu_hours"] == early["offered_gpu_hours"].max()
    assert choose_target(curve, 1.01) is None  # a bar nothing meets chooses nothing
    size = by_pool_size(rep.offers)
    assert set(size["policy"]) == {"idlecap", "naive"} and (size["pools"] > 0).all()
    # spot blocks carry the model's risk, at or under the spot target
    assert (rep.spot["interruption_risk"] <= rules.spot_offer_quantile + 1e-9).all()
