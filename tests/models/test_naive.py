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


def test_long_horizons_never_get_narrower_or_zero_width_intervals():
    rng = np.random.default_rng(1)
    df = _series(hours=504, cap=1000.0)  # far from the [0, capacity] clip, which may narrow any band
    df["y"] = 500 + np.cumsum(rng.normal(0, 0.5, len(df)))
    for model in (Naive(), SeasonalNaive(24), SeasonalNaive(168)):
        fc = model.fit(df).predict(720)
        w = (fc["q95"] - fc["q05"]).to_numpy()
        assert w[-1] > 0 and w[-1] >= 0.9 * w[335], model.name


def test_a_stale_pool_gets_the_intervals_of_its_true_lag():
    rng = np.random.default_rng(2)
    a = _series(hours=24 * 21)
    a["y"] = np.clip(8 + np.cumsum(rng.normal(0, 0.7, len(a))), 0, 16)
    b = a.assign(unique_id="stale")
    b.loc[b.index[-72:], "y"] = np.nan  # stopped reporting three days ago
    fc = Naive().fit(pd.concat([a, b])).predict(1)
    w = fc.set_index("unique_id").eval("q90 - q10")
    assert w["stale"] > 2 * w["p"]


def test_a_pool_without_any_observation_gets_no_forecast_rather_than_a_certain_zero():
    df = _series()
    empty = df.assign(unique_id="empty", y=np.nan)
    for model in (Naive(), SeasonalNaive(24)):
        fc = model.fit(pd.concat([df, empty])).predict(24)
        assert set(fc["unique_id"]) == {"p"}
