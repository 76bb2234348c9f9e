"""The historical drawdown guard (reserved) and block risk (spot) on hand-made histories."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pricing.drawdown import measure

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def _frame(values: dict[str, np.ndarray], cap: float = 10.0) -> pd.DataFrame:
    n = len(next(iter(values.values())))
    ds = pd.date_range(T0, periods=n, freq="h")
    return pd.concat([pd.DataFrame({"unique_id": k, "ds": ds, "y": v, "gpus_total": cap}) for k, v in values.items()])


def test_a_pool_that_empties_every_other_day_cannot_promise_and_a_steady_one_can() -> None:
    days = 20
    steady = np.full(24 * days, 8.0)
    flaky = np.tile(np.r_[np.full(24, 10.0), np.full(24, 0.0)], days // 2)
    d = measure(_frame({"steady": steady, "flaky": flaky}), (1,))
    caps = np.array([10.0, 10.0])
    got = d.cap_gpus(pd.Series(["steady", "flaky"]), caps, 1, np.array([0.05, 0.05]))
    # pooled drawdowns include the flaky pool's full losses: 8 - q95(pooled) x 10 for steady; flaky is at 0 now
    assert got[1] == 0 and 0 <= got[0] <= 8
    own = d.own_quantile(1, pd.Series(["steady"]), np.array([0.05]))
    assert own[0] == 0.0  # the steady pool never lost anything itself


def test_terms_without_enough_history_and_pools_just_back_from_an_outage_promise_nothing() -> None:
    y = np.full(24 * 3, 8.0)
    d = measure(_frame({"p": y}), (1, 7))
    assert np.isnan(d.quantile(7, np.array([0.05]))).all()            # 3 days cannot measure a week
    gap = y.copy()
    gap[-20:-2] = np.nan                                                # 18 of the last 24 h missing
    d2 = measure(_frame({"p": np.r_[np.full(24 * 5, 8.0), gap]}), (1,))
    assert np.isnan(d2.idle_now["p"])
    assert np.isnan(d2.cap_gpus(pd.Series(["p"]), np.array([10.0]), 1, np.array([0.05]))[0])  # optimizer: 0 GPUs


def test_block_risk_matches_how_often_history_dipped() -> None:
    # idle 10, but in half of the days a job takes 6 GPUs from 06:00 to 12:00
    days = 30
    rng = np.random.default_rng(0)
    y = np.full(24 * days, 10.0)
    for d in range(days):
        if rng.random() < 0.5:
            y[24 * d + 6: 24 * d + 12] = 4.0
    d = measure(_frame({"p": y}), (1,), block_hours=6)
    # leasing 8 of 10 (needs a drawdown > 0.2 to be reclaimed) in a block one day out
    risk = d.block_risk(pd.Series(["p"]), np.array([10.0]), np.array([[1]]), np.array([[8.0]]))[0, 0]
    truth = np.mean([(y[t + 24: t + 30] < 8).any() for t in range(len(y) - 30)])
    assert abs(risk - truth) < 0.05
