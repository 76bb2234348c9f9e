import numpy as np
import pandas as pd
import pytest

from models.base import QCOLS
from models.metrics import evaluate, insample_scale, pinball


def _cv(model, y, mean, spread, cutoff, event=None):
    n = len(y)
    ds = cutoff + pd.to_timedelta(np.arange(n), unit="h")
    d = pd.DataFrame({"unique_id": "p", "ds": ds, "cutoff": cutoff, "step": np.arange(1, n + 1), "model": model,
                      "y": y, "mean": mean, "gpus_total": 100.0, "event": event if event is not None else False})
    for c, k in zip(QCOLS, (-2, -1.3, -0.7, 0, 0.7, 1.3, 2)):
        d[c] = np.asarray(mean) + k * spread
    return d


def test_metrics_match_hand_computation():
    c = pd.Timestamp("2026-01-10", tz="UTC")
    y = np.array([10.0, 12, 14, 16])
    cv = pd.concat([
        _cv("naive", y, [10.0] * 4, 1.0, c),
        _cv("snaive_24", y, [12.0] * 4, 1.0, c),
        _cv("m", y, [11.0, 12, 13, 16], 1.0, c, event=np.array([True, False, False, False])),
    ])
    scale = pd.DataFrame({"unique_id": ["p"], "cutoff": [c], "scale": [2.0]})
    per_pool, overall = evaluate(cv, scale)
    o = overall.set_index("model")
    assert o.loc["naive", "mae"] == pytest.approx((0 + 2 + 4 + 6) / 4)
    assert o.loc["m", "mae"] == pytest.approx(0.5)
    assert o.loc["m", "mae_vs_naive"] == pytest.approx(0.5 / 3.0)
    assert o.loc["m", "mae_vs_snaive"] == pytest.approx(0.5 / 2.0)
    assert o.loc["m", "mase_median"] == pytest.approx(0.25)
    assert o.loc["m", "mae_event"] == pytest.approx(1.0) and o.loc["m", "mae_rest"] == pytest.approx(1 / 3)
    # 80% band = mean +- 1.3: m covers the 3 points off by <= 1.3 (all four: errors 1,0,1,0)
    assert o.loc["m", "coverage80"] == pytest.approx(1.0)
    assert o.loc["naive", "coverage80"] == pytest.approx(0.25)
    assert o.loc["m", "width80"] == pytest.approx(2.6)


def test_pinball_is_zero_at_the_truth_and_grows_with_error():
    y = np.array([5.0])
    q = np.full((1, 7), 5.0)
    assert pinball(y, q)[0] == 0
    assert pinball(y, q + 1)[0] > 0 and pinball(y, q + 2)[0] > pinball(y, q + 1)[0]


def test_insample_scale_uses_only_history_before_each_cutoff_and_is_floored():
    ds = pd.date_range("2026-01-01", periods=24 * 4, freq="h", tz="UTC")
    y = np.r_[np.zeros(48), np.arange(48.0)]
    df = pd.DataFrame({"unique_id": "p", "ds": ds, "y": y, "gpus_total": 100.0})
    s = insample_scale(df, [ds[48], ds[72]], season=24).set_index("cutoff")["scale"]
    assert s.loc[ds[48]] == pytest.approx(1.0)  # zero in-sample change -> floor 1% of 100
    assert s.loc[ds[72]] > 1.0  # later cutoff sees the ramp
