"""Reserved and spot sizing from the window-risk model (pricing.capacity_risk + pricing.optimizer)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.base import QCOLS
from pricing.capacity_risk import fit_capacity_risk
from pricing.demand import DemandModel
from pricing.optimizer import Market, reserved_in_hours, reserved_quantities, spot_offers
from pricing.rules import DemandPrior, PricingRules

RULES = PricingRules(reserved_terms_days=(1, 7), term_discount={1: 0.0, 7: 0.05}, reclaim_penalty_multiple=2.0)


def market(df: pd.DataFrame) -> Market:
    caps = df.groupby("unique_id")["gpus_total"].max()
    pools = pd.DataFrame({"pool": caps.index, "gpu_model": "A100", "region": "dc1", "gpus_total": caps.to_numpy(),
                          "floor": 0.5})
    refs = pd.DataFrame([
        dict(gpu_model="A100", product_class=c, provider="aws", region="us-east-1", sku=f"a100.{c}", product=c,
             usd_per_gpu_hour=p, as_of=pd.Timestamp("2026-01-01")) for c, p in (("spot", 2.0), ("reserved", 3.0))])
    return Market(pools=pools, references=refs)


def flat_forecast(df: pd.DataFrame, start: pd.Timestamp, hours: int) -> pd.DataFrame:
    """A complete hourly forecast (reserved sizing reads only its coverage; spot prices its spread)."""
    caps = df.groupby("unique_id")["gpus_total"].max()
    ds = pd.date_range(start.floor("h"), periods=hours, freq="h")
    f = pd.DataFrame({"unique_id": np.repeat(caps.index, len(ds)), "ds": np.tile(ds, len(caps))})
    cap = f["unique_id"].map(caps).to_numpy(float)
    for j, c in enumerate(QCOLS):
        f[c] = cap * (0.1 + 0.1 * j)
    f["mean"] = f["q50"]
    f["gpus_total"] = cap
    return f


@pytest.fixture(scope="module")
def priced(fleet_with_plan):
    df, cal = fleet_with_plan
    valid_from = df["ds"].min().floor("D") + pd.Timedelta(days=19, hours=18)
    hist = df[df["ds"] < valid_from]
    risk = fit_capacity_risk(hist, cal, valid_from, RULES)
    m = market(df)
    hourly = flat_forecast(df, valid_from, 24 * 10)
    res = reserved_quantities(hourly, m, RULES, valid_from.ceil("D"), risk=risk)
    return df, cal, valid_from, risk, m, hourly, res


def test_nested_tranches_never_exceed_any_hours_promise(priced):
    df, _, valid_from, risk, m, _, res = priced
    assert risk.fitted and res["gpus_offered"].sum() > 0
    pools = m.pools["pool"].tolist()
    caps = m.pools["gpus_total"].to_numpy(float)
    start = valid_from.ceil("D")
    hours = pd.date_range(start, periods=24 * 7, freq="h")
    held = reserved_in_hours(res.assign(start=start, end=start + pd.to_timedelta(res["term_days"], unit="D")),
                             pools, hours)
    # an hour's promise is that of the shortest term whose window holds it (the longer terms' tranches
    # lie under it): day 1 may hold what the 1-day window promises, days 2-7 what the 7-day one does
    lo = 0
    for d in sorted(RULES.reserved_terms_days):
        alone = risk.term_largest(pools, caps, d, RULES.reserved_break_target)
        assert (held[:, lo: 24 * d] <= alone[:, None] + 1e-9).all(), d
        lo = 24 * d


def test_each_tranche_carries_at_most_its_break_target(priced):
    _, _, _, _, _, _, res = priced
    sold = res[res["gpus_offered"] > 0]
    level = np.fmin(RULES.reserved_break_target, sold["newsvendor_level"].to_numpy(float))
    assert (sold["break_probability"].to_numpy(float) <= level + 1e-9).all()


def test_spot_blocks_publish_the_risk_they_are_sized_at(priced):
    df, _, valid_from, risk, m, hourly, res = priced
    demand = DemandModel(DemandPrior(2.0, 0.25))
    sp = spot_offers(hourly, m, RULES, demand, valid_from, res, risk=risk)
    on = sp[sp["gpus_offered"] > 0]
    assert len(on)
    assert (on["interruption_risk"] <= RULES.spot_offer_quantile + 1e-9).all()
    assert on["interruption_risk"].notna().all()
    # a riskier block is worth less than a sure hour at the reference; never more
    assert ((on["risk_value"] <= 1 + 1e-12) & (on["risk_value"] > 0)).all()


def test_a_term_is_never_sold_on_a_looser_risk_than_its_days(fleet_with_plan):
    df, cal = fleet_with_plan
    valid_from = df["ds"].min().floor("D") + pd.Timedelta(days=8, hours=18)  # too young for direct 7-day windows
    risk = fit_capacity_risk(df[df["ds"] < valid_from], cal, valid_from, RULES)
    assert risk.fitted and not risk.direct(7)
    pools = sorted(df["unique_id"].unique())
    k = np.full(len(pools), 5.0)
    week = risk.term_break(pools, 7, k)
    days = risk._days(pools, 7)
    per_day = pd.Series(risk.model.break_probability(days, np.full(len(days), 5.0))).groupby(
        days["unique_id"].to_numpy()).max().reindex(pools).to_numpy()
    assert (week >= per_day - 1e-12).all()


def test_old_enough_history_reads_terms_directly(priced):
    _, _, _, risk, _, _, _ = priced
    assert risk.direct(1) and risk.direct(7)
