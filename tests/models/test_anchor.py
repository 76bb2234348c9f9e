"""Short-lead anchoring: lead 1 is the last observation, the gap fades, nothing else changes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from models import catalog
from models.anchor import ShortLeadAnchor
from models.base import QCOLS, check_forecast_frame
from models.naive import SeasonalNaive


def history(days: int = 10, last: float = 30.0, gap_hours: int = 0) -> pd.DataFrame:
    ds = pd.date_range("2026-03-02", periods=24 * days, freq="h", tz="UTC")
    y = np.asarray(10 + 5 * np.sin(2 * np.pi * ds.hour / 24), dtype=float)
    y[-6:] = last  # a level shift the daily shape has not seen
    df = pd.DataFrame({"unique_id": "p", "ds": ds, "y": y, "gpus_total": 64.0})
    if gap_hours:
        df.loc[df.index[-gap_hours:], "y"] = np.nan
    return df


def test_first_hours_are_the_last_observation_then_the_gap_fades():
    df = history()
    raw = SeasonalNaive(24).fit(df).predict(24)
    anc = ShortLeadAnchor(SeasonalNaive(24), decay=0.5, hold_hours=3).fit(df).predict(24)
    check_forecast_frame(anc, {"p": 64.0})
    np.testing.assert_allclose(anc["mean"].iloc[:3], 30.0)  # persistence over the first 3 hours
    w = np.r_[np.ones(3), 0.5 ** np.arange(1, 22)]
    shift = (30.0 - raw["mean"].to_numpy()) * w
    np.testing.assert_allclose(anc["mean"] - raw["mean"], shift, atol=1e-9)
    # every quantile moves with the mean: the spread is the model's
    np.testing.assert_allclose(anc[QCOLS].to_numpy() - raw[QCOLS].to_numpy(),
                               np.repeat(shift[:, None], len(QCOLS), axis=1), atol=1e-9)


def test_no_recent_observation_no_shift():
    df = history(gap_hours=4)
    raw = SeasonalNaive(24).fit(df).predict(12)
    anc = ShortLeadAnchor(SeasonalNaive(24), decay=0.85).fit(df).predict(12)
    pd.testing.assert_frame_equal(raw.reset_index(drop=True), anc.reset_index(drop=True))


def test_stays_inside_capacity():
    df = history(last=64.0)
    anc = ShortLeadAnchor(SeasonalNaive(24), decay=0.99).fit(df).predict(24)
    assert (anc[QCOLS + ["mean"]].to_numpy() <= 64.0 + 1e-9).all()
    check_forecast_frame(anc, {"p": 64.0})


def test_catalogue_anchors_every_model_but_persistence():
    assert not isinstance(catalog.build("naive", 24), ShortLeadAnchor)
    m = catalog.build("snaive_24", 24)
    assert isinstance(m, ShortLeadAnchor) and m.name == "snaive_24"
    assert clone(m).get_params()["decay"] == 0.95
    assert not isinstance(catalog.build("snaive_24", 24, anchor_decay=0.0), ShortLeadAnchor)
    with pytest.raises(ValueError, match="decay"):
        ShortLeadAnchor(SeasonalNaive(24), decay=1.0).fit(history())
