"""Features never look past the origin: corrupting the future changes nothing."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.direct import PanelStats, direct_features, direct_target
from features.panel import panel_from_long
from features.planned import plan_windows


def _features(df, cal, origin_idx, H=72):
    panel = panel_from_long(df)
    stats = PanelStats.of(panel)
    s, h = np.meshgrid(np.arange(panel.n), np.arange(1, H + 1), indexing="ij")
    s, h = s.ravel(), h.ravel()
    o = np.full(len(s), origin_idx)
    origin = panel.start + pd.Timedelta(hours=origin_idx)
    plan = plan_windows(cal, panel.ids, pd.DatetimeIndex([origin]), lo=-168, hi=H)
    X = direct_features(panel, stats, s, o, h, plan, np.zeros(len(s), dtype=int), country="US")
    return panel, X


def test_corrupting_future_rows_and_later_plans_changes_no_feature(fleet):
    df, cal = fleet
    origin_idx = 24 * 21
    panel, X = _features(df, cal, origin_idx)
    origin = panel.start + pd.Timedelta(hours=origin_idx)

    rng = np.random.default_rng(1)
    bad = df.copy()
    future = bad["ds"] >= origin
    bad.loc[future, "y"] = rng.uniform(0, 1000, future.sum())
    bad.loc[future, "gpus_total"] = 4096.0
    # plan versions learned after the origin: move every run and double its size
    late = cal.copy()
    late["known_at"] = origin + pd.Timedelta(minutes=1)
    late["start"] = late["start"] - pd.Timedelta(hours=5)
    late["gpus"] = late["gpus"] * 2
    _, X_bad = _features(bad, pd.concat([cal, late], ignore_index=True), origin_idx)
    pd.testing.assert_frame_equal(X, X_bad)


def test_corrupting_the_past_does_change_features(fleet):
    """The leak test above could pass trivially if features ignored data; they do not."""
    df, cal = fleet
    origin_idx = 24 * 21
    panel, X = _features(df, cal, origin_idx)
    origin = panel.start + pd.Timedelta(hours=origin_idx)
    bad = df.copy()
    past = (bad["ds"] < origin) & (bad["ds"] >= origin - pd.Timedelta(hours=24))
    bad.loc[past, "y"] = 0.0
    _, X_bad = _features(bad, cal, origin_idx)
    for col in ("y_last", "mean_24", "lag_day"):
        assert not np.allclose(X[col], X_bad[col]), col


def test_plan_features_follow_the_version_known_at_the_origin(fleet):
    df, cal = fleet
    panel = panel_from_long(df)
    origin = panel.start + pd.Timedelta(days=20)
    pool = panel.ids[0]
    extra = pd.DataFrame({"run_id": ["probe"], "pool": [pool], "start": [origin + pd.Timedelta(hours=30)],
                          "end": [origin + pd.Timedelta(hours=40)], "gpus": [64], "status": ["planned"],
                          "known_at": [origin - pd.Timedelta(hours=1)]})
    cancel = extra.assign(status="cancelled", known_at=origin + pd.Timedelta(hours=1))
    both = pd.concat([cal, extra, cancel], ignore_index=True)
    base = plan_windows(cal, panel.ids, pd.DatetimeIndex([origin]), lo=0, hi=48)
    pw = plan_windows(both, panel.ids, pd.DatetimeIndex([origin]), lo=0, hi=48)
    # known at the origin: the run is planned (cancellation came later) -> +64 GPUs in hours 30..39
    diff = pw.gpus[0, 0] - base.gpus[0, 0]
    assert np.allclose(diff[30:40], 64) and np.allclose(diff[:30], 0) and np.allclose(diff[40:], 0)
    assert pw.to_start[0, 0, 29] <= 1 and pw.to_start[0, 0, 30] == 0
    # one hour after the origin the cancellation is known: the run is gone
    later = origin + pd.Timedelta(hours=2)
    pw2 = plan_windows(both, panel.ids, pd.DatetimeIndex([later]), lo=0, hi=48)
    base2 = plan_windows(cal, panel.ids, pd.DatetimeIndex([later]), lo=0, hi=48)
    assert np.allclose(pw2.gpus, base2.gpus)


def test_target_is_share_of_capacity_and_nan_when_unobserved(fleet):
    df, _ = fleet
    d = df.copy()
    d.loc[d.index[5], "y"] = np.nan
    panel = panel_from_long(d)
    y = direct_target(panel, np.array([0, 0]), np.array([1, 5]), np.array([5, 1]))
    assert np.isnan(y[0]) and np.isnan(y[1])  # both point at hour index 5 of series 0
    y2 = direct_target(panel, np.array([0]), np.array([10]), np.array([1]))
    assert y2[0] == pytest.approx(d["y"].iloc[10] / d["gpus_total"].iloc[10])
