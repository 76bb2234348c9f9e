"""The calendar-aware direct LightGBM: known-future inputs at every step, calibrated bounds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.planned import plan_as_of
from models.backtest import cross_validation
from models.base import check_forecast_frame
from models.lgbm import LGBMDirect


@pytest.fixture(scope="module")
def fitted(fleet):
    df, cal = fleet
    return LGBMDirect(horizon=72, n_estimators=150, max_train_rows=150_000).fit(df, cal)


def test_a_run_planned_at_step_30_moves_the_forecast_at_step_30(fleet, fitted):
    """Direct models elsewhere have silently ignored known-future inputs beyond step 1."""
    df, cal = fleet
    origin = df["ds"].max() + pd.Timedelta(hours=1)
    pool = sorted(df["unique_id"].unique())[0]
    cap = float(df.loc[df["unique_id"] == pool, "gpus_total"].iloc[-1])
    plan = plan_as_of(cal, origin).rename(columns={"unique_id": "pool"})
    # no run of this pool anywhere near the horizon, then one run starting at step 30
    near = (plan["pool"] == pool) & (plan["end"] > origin - pd.Timedelta(hours=48))
    quiet = plan[~near].drop(columns="known_at")
    run = pd.DataFrame({"run_id": ["probe"], "pool": [pool], "start": [origin + pd.Timedelta(hours=29)],
                        "end": [origin + pd.Timedelta(hours=29 + 24)], "gpus": [int(cap * 0.6)], "status": ["planned"]})
    a = fitted.predict(72, X_df=quiet)
    b = fitted.predict(72, X_df=pd.concat([quiet, run], ignore_index=True))
    ma = a.loc[a["unique_id"] == pool, "mean"].to_numpy()
    mb = b.loc[b["unique_id"] == pool, "mean"].to_numpy()
    drop = ma - mb
    assert drop[29] > 0.3 * cap, f"step 30 fell by {drop[29]:.1f} of {cap} GPUs"
    assert drop[35] > 0.3 * cap
    assert abs(drop[:20]).max() < 0.15 * cap  # long before the run, the forecast barely moves
    # other pools do not move at all
    other = a["unique_id"] != pool
    assert np.allclose(a.loc[other, "mean"], b.loc[other, "mean"])


def test_quantiles_never_cross_and_stay_within_capacity(fleet, fitted):
    df, cal = fleet
    fc = fitted.predict(72, X_df=plan_as_of(cal, df["ds"].max()))
    caps = df.groupby("unique_id")["gpus_total"].last().to_dict()
    check_forecast_frame(fc, caps)
    assert len(fc) == 72 * df["unique_id"].nunique()
    assert (fc["q95"] > fc["q05"]).mean() > 0.9  # real intervals, not collapsed points


def test_horizon_beyond_training_is_refused(fitted):
    with pytest.raises(ValueError, match="exceeds the trained horizon"):
        fitted.predict(73)


def test_calendar_features_cut_mae_by_at_least_30_percent(fleet):
    df, cal = fleet
    kw = dict(horizon=72, n_estimators=150, max_train_rows=120_000, conformal=False)
    cv = cross_validation([LGBMDirect(**kw), LGBMDirect(use_calendar=False, **kw)], df, cal,
                          h=72, n_windows=3, step=72)
    mae = cv.assign(ae=(cv["y"] - cv["mean"]).abs()).groupby("model")["ae"].mean()
    assert mae["lgbm"] <= 0.7 * mae["lgbm_nocal"], mae.to_dict()


def test_new_history_moves_the_forecast_without_refitting(fleet, fitted):
    df, cal = fleet
    last_day = df["ds"] >= df["ds"].max() - pd.Timedelta(hours=23)
    shifted = df.copy()
    shifted.loc[last_day, "y"] = 0.0
    a = fitted.predict(24, X_df=plan_as_of(cal, df["ds"].max()))
    b = fitted.predict(24, X_df=plan_as_of(cal, df["ds"].max()), new_df=shifted)
    assert b["mean"].sum() < a["mean"].sum()
