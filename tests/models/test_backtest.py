import numpy as np
import pandas as pd
import pytest

from models.backtest import add_selected, cross_validation, rolling_origins
from models.naive import Naive


class Spy(Naive):
    """Persistence that records what each fit was given: last history hour and newest plan version."""

    seen: list = []

    def fit(self, df, calendar=None):
        Spy.seen.append((df["ds"].max(), None if calendar is None or calendar.empty else calendar["known_at"].max()))
        return super().fit(df, calendar)

    @property
    def name(self):
        return "spy"


def test_rolling_origins_end_exactly_at_the_data():
    end = pd.Timestamp("2026-02-01", tz="UTC")
    o = rolling_origins(end, h=24, n_windows=3, step=24)
    assert list(o) == [end - pd.Timedelta(hours=72), end - pd.Timedelta(hours=48), end - pd.Timedelta(hours=24)]


def test_each_origin_sees_only_history_and_plans_known_before_it(fleet):
    df, cal = fleet
    Spy.seen = []
    cv = cross_validation([Spy()], df, cal, h=24, n_windows=4, step=24)
    origins = sorted(cv["cutoff"].unique())
    assert len(origins) == 4
    for (last_hist, newest_plan), origin in zip(Spy.seen, origins):
        assert last_hist < origin
        assert newest_plan <= origin
    assert (cv["ds"] >= cv["cutoff"]).all() and (cv["ds"] < cv["cutoff"] + pd.Timedelta(hours=24)).all()
    assert cv["step"].between(1, 24).all()


def test_masked_hours_are_not_scored(fleet):
    df, cal = fleet
    d = df.copy()
    last_day = d["ds"] >= d["ds"].max() - pd.Timedelta(hours=23)
    d.loc[last_day & (d["unique_id"] == d["unique_id"].iloc[0]), "y"] = np.nan
    cv = cross_validation([Naive()], d, cal, h=24, n_windows=1, step=24)
    assert len(cv) == 24 * (d["unique_id"].nunique() - 1)


def test_sliding_window_limits_history(fleet):
    df, cal = fleet
    Spy.seen = []
    with pytest.raises(ValueError, match="window_size"):
        cross_validation([Spy()], df, cal, h=24, n_windows=1, window="sliding")


def test_selection_uses_only_earlier_windows():
    c = [pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=k) for k in range(3)]
    rows = []
    for k, cut in enumerate(c):
        for model, err in (("a", 1.0 if k < 2 else 5.0), ("b", 2.0)):
            rows.append(dict(unique_id="p", ds=cut, cutoff=cut, step=1, model=model, y=10.0, mean=10.0 + err,
                             q05=0, q10=0, q25=0, q50=0, q75=0, q90=0, q95=0, gpus_total=20.0, event=False))
    cv = add_selected(pd.DataFrame(rows), ["a", "b"])
    sel = cv[cv["model"] == "selected"].sort_values("cutoff")
    # window 3: "a" was best on windows 1-2, so it is used although it is worse in window 3
    assert list(sel["mean"]) == [11.0, 11.0, 15.0]
