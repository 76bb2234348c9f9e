import numpy as np
import pandas as pd
import pytest

from models.base import check_forecast_frame
from models.naive import Naive, SeasonalNaive


def _series(hours=24 * 14, cap=16.0):
    ds = pd.date_range("2026-01-05", periods=hours, freq="h", tz="UTC")
    y = 8 + 6 * np.sin(2 * np.pi * np.arange(hours) / 24)
    return pd.DataFrame({"unique_id": "p", "ds": ds, "y": y, "gpus_total": cap})


def test_seasonal_naive_repeats_the_last_season():
    df = _series()
    fc = SeasonalNaive(24).fit(df).predict(48)
    assert np.allclose(fc["mean"], np.tile(df["y"].to_numpy()[-24:], 2))
    assert fc["ds"].iloc[0] == df["ds"].iloc[-1] + pd.Timedelta(hours=1)
    check_forecast_frame(fc, {"p": 16.0})


def test_seasonal_naive_skips_missing_hours_with_the_last_observed_value():
    df = _series()
    df.loc[df.index[-24], "y"] = np.nan
    fc = SeasonalNaive(24).fit(df).predict(1)
    assert fc["mean"].iloc[0] == pytest.approx(df["y"].iloc[-25])


def test_naive_intervals_widen_with_the_horizon():
    rng = np.random.default_rng(0)
    df = _series()
    df["y"] = np.clip(8 + np.cumsum(rng.normal(0, 0.5, len(df))), 0, 16)
    fc = Naive().fit(df).predict(48)
    w = (fc["q90"] - fc["q10"]).to_numpy()
    assert w[-1] > w[0]
    assert np.allclose(fc["mean"], df["y"].iloc[-1])
    check_forecast_frame(fc, {"p": 16.0})
