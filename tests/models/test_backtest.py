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


def _row(pool, cut, ds, model, err):
    return dict(unique_id=pool, ds=ds, cutoff=cut, step=1, model=model, y=10.0, mean=10.0 + err,
                q05=0, q10=0, q25=0, q50=0, q75=0, q90=0, q95=0, gpus_total=20.0, event=False)


def test_selection_ignores_errors_at_or_after_the_cutoff_when_windows_overlap():
    """h > step: an earlier window's hours reach past the next cutoff; those must not be used."""
    c0 = pd.Timestamp("2026-01-01", tz="UTC")
    c1 = c0 + pd.Timedelta(hours=24)
    rows = [_row("p", c0, c0 + pd.Timedelta(hours=1), "a", 0.0), _row("p", c0, c0 + pd.Timedelta(hours=1), "b", 3.0),
            # window 0's second day lies after cutoff c1: there "b" looks better, but it is the future
            _row("p", c0, c1 + pd.Timedelta(hours=1), "a", 9.0), _row("p", c0, c1 + pd.Timedelta(hours=1), "b", 0.0),
            _row("p", c1, c1 + pd.Timedelta(hours=1), "a", 1.0), _row("p", c1, c1 + pd.Timedelta(hours=1), "b", 2.0)]
    cv = add_selected(pd.DataFrame(rows), ["b", "a"])
    sel = cv[(cv["model"] == "selected") & (cv["cutoff"] == c1)]
    assert list(sel["mean"]) == [11.0]  # "a", chosen on hours before c1 only


def test_selection_covers_pools_that_appear_later():
    c = [pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=k) for k in range(2)]
    rows = [_row("p", c[0], c[0], "a", 1.0), _row("p", c[0], c[0], "b", 2.0),
            _row("p", c[1], c[1], "a", 1.0), _row("p", c[1], c[1], "b", 2.0),
            _row("q", c[1], c[1], "a", 1.0), _row("q", c[1], c[1], "b", 2.0)]
    cv = add_selected(pd.DataFrame(rows), ["a", "b"])
    assert (cv[cv["model"] == "selected"]["unique_id"] == "q").sum() == 1


def test_forecasts_start_at_the_origin_even_after_an_outage(fleet):
    df, cal = fleet
    origin = df["ds"].max() + pd.Timedelta(hours=1) - pd.Timedelta(hours=24)
    outage = (df["ds"] >= origin - pd.Timedelta(hours=3)) & (df["ds"] < origin)
    cv = cross_validation([Naive()], df[~outage], cal, h=24, n_windows=1, step=24)
    assert cv["ds"].min() == origin and len(cv) == 24 * df["unique_id"].nunique()
    assert cv["step"].min() == 1


def test_shared_fits_at_an_origin_equal_each_model_fitted_alone(fleet) -> None:
    """The ensemble built from the lgbm and mstl candidates' fits (and anchored after) is exactly
    what it forecasts when it fits its own members."""
    from sklearn.base import clone

    from models import catalog
    from models.backtest import origin_forecasts

    df, cal = fleet
    origin = df["ds"].max() - pd.Timedelta(hours=47)
    train, known = df[df["ds"] < origin], cal[cal["known_at"] <= origin]
    cands = catalog.build_all(["naive", "snaive_24", "mstl", "lgbm", "ensemble"], 24, {"n_estimators": 30, "n_jobs": 1})
    shared = origin_forecasts(cands, train, known, 24)
    alone = [clone(f).fit(train, known).predict(24, X_df=known) for f in cands]
    for a, b, f in zip(shared, alone, cands):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), obj=f.name)
    assert [a["model"].iloc[0] for a in shared] == ["naive", "snaive_24", "mstl", "lgbm", "ensemble"]
