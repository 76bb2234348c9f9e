"""Spot risk calibration on a synthetic process with a known answer, chosen on early origins."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricing.risk_calibration import SpotRiskCalibrator, brier, calibrate_on_early, reliability, reliability_chart


def _blocks(n: int, seed: int, origins: int = 10) -> pd.DataFrame:
    """A raw score that is monotone in the truth but miscalibrated: truth = 0.15 + 0.6 x score^2."""
    rng = np.random.default_rng(seed)
    score = rng.uniform(0, 1, n)
    truth = 0.15 + 0.6 * score**2
    o = pd.date_range("2026-01-01 18:00", periods=origins, freq="D", tz="UTC")
    return pd.DataFrame({"origin": o[rng.integers(0, origins, n)], "interruption_risk": score,
                         "reclaimed": rng.uniform(0, 1, n) < truth, "truth": truth})


def test_the_map_recovers_the_true_probability() -> None:
    b = _blocks(20_000, 0)
    cal = SpotRiskCalibrator().fit(b["interruption_risk"], b["reclaimed"])
    assert cal.calibrated_
    grid = np.linspace(0.05, 0.95, 10)
    assert np.abs(cal.predict(grid) - (0.15 + 0.6 * grid**2)).max() < 0.05
    assert (np.diff(cal.predict(np.linspace(0, 1, 101))) >= -1e-12).all()  # monotone: riskier never reads safer
    assert np.isnan(cal.predict(np.array([np.nan]))[0])
    assert brier(cal.predict(b["interruption_risk"]), b["reclaimed"]) < brier(b["interruption_risk"], b["reclaimed"])


def test_early_origins_choose_later_ones_score_and_every_band_is_near_the_truth() -> None:
    b = _blocks(6_000, 1)
    rep = calibrate_on_early(b)
    assert max(rep.early_origins) < min(rep.later_origins)  # nothing from the later origins chose the map
    s = rep.summary.set_index("risk")
    assert abs(s.loc["calibrated", "mean_predicted"] - s.loc["calibrated", "realized"]) < 0.03
    assert s.loc["calibrated", "brier"] < s.loc["constant (early rate)", "brier"]
    assert s.loc["calibrated", "brier"] < s.loc["raw", "brier"]
    cb = rep.bands[(rep.bands["risk"] == "calibrated") & (rep.bands["blocks"] >= 50)]
    assert len(cb) >= 3 and (cb["predicted"] - cb["realized"]).abs().max() < 0.08
    assert rep.calibrator.n_blocks_ == len(b)  # refit on every block for use
    assert rep.adopted
    png = reliability_chart(rep.bands, "test")
    assert png[:4] == b"\x89PNG"


def test_too_few_blocks_leave_the_score_alone_and_a_curve_round_trips() -> None:
    small = _blocks(50, 2)
    cal = SpotRiskCalibrator(min_blocks=200).fit(small["interruption_risk"], small["reclaimed"])
    assert not cal.calibrated_ and np.allclose(cal.predict([0.1, 0.7]), [0.1, 0.7])
    big = _blocks(2_000, 3)
    fitted = SpotRiskCalibrator().fit(big["interruption_risk"], big["reclaimed"])
    again = SpotRiskCalibrator.from_curve(fitted.x_, fitted.y_, fitted.n_blocks_)
    assert np.allclose(again.predict(np.linspace(0, 1, 11)), fitted.predict(np.linspace(0, 1, 11)))
    t = reliability(np.array([0.1, 0.1, 0.9]), np.array([0, 1, 1]))
    assert t["band"].tolist() == ["0.05-0.10", "0.80-1.00"] and t["blocks"].tolist() == [2, 1]
    assert t["realized"].tolist() == pytest.approx([0.5, 1.0])


def test_pricing_applies_the_curve_to_new_spot_items_only() -> None:
    from pricing.risk_calibration import apply_spot_calibration as calibrate_spot_risk

    items = pd.DataFrame({"product": ["spot", "spot", "reserved_1d"], "interruption_risk": [0.2, 0.2, 0.0],
                          "guardrails": [[], ["hold_last:stale_telemetry"], []]})
    curve = {"x": [0.0, 1.0], "y": [0.3, 0.9], "n_blocks": 500, "fitted_at": pd.Timestamp("2026-01-01")}
    out = calibrate_spot_risk(items, curve)
    assert out["interruption_risk"].tolist() == pytest.approx([0.42, 0.2, 0.0])  # held item: already calibrated
    assert out["interruption_risk_raw"].iloc[0] == 0.2 and np.isnan(out["interruption_risk_raw"].iloc[2])
    assert calibrate_spot_risk(items, None)["interruption_risk"].tolist() == [0.2, 0.2, 0.0]


def test_a_map_that_drifts_wrong_on_later_origins_is_not_adopted() -> None:
    """Early origins reclaim far more often than later ones: the map learned early over-predicts
    later, so it is not adopted and pricing keeps the raw score."""
    b = _blocks(6_000, 4)
    late = b["origin"] >= sorted(b["origin"].unique())[5]
    rng = np.random.default_rng(5)
    b.loc[~late, "reclaimed"] = rng.uniform(0, 1, (~late).sum()) < 0.9
    b.loc[late, "reclaimed"] = rng.uniform(0, 1, late.sum()) < b.loc[late, "interruption_risk"]  # raw is right later
    rep = calibrate_on_early(b)
    assert rep.calibrator.calibrated_ and not rep.adopted
