"""Spot interruption risk that means what it says: recalibrated on backtest outcomes.

The optimizer's interruption risk (forecast + drawdown history) is a score, not yet a
probability: on Helios it under-predicts low-risk blocks and over-predicts high-risk ones once
reclaims are judged at sample level. `SpotRiskCalibrator` learns the map from that score to the
observed reclaim rate with isotonic regression (monotone: a riskier score never reads safer) on
the pricing backtest's spot blocks; `calibrate_on_early` chooses and scores it honestly (fit on
the earlier origins, judged on the later ones), and the curve refitted on every block is what
pricing applies to the published `interruption_risk`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression

MIN_BAND_BLOCKS = 20
BANDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)  # fine where spot risks are sized


class SpotRiskCalibrator(BaseEstimator):
    """Isotonic map raw interruption risk -> probability a block is cut short at some sample.

    Too few blocks (< min_blocks) leave the map at identity: an honest 'not calibrated yet'."""

    def __init__(self, min_blocks: int = 200):
        self.min_blocks = min_blocks

    def fit(self, risk: np.ndarray, reclaimed: np.ndarray) -> "SpotRiskCalibrator":
        risk, y = _clean(risk, reclaimed)
        self.n_blocks_ = len(risk)
        if self.n_blocks_ < self.min_blocks:
            self.x_, self.y_ = np.array([0.0, 1.0]), np.array([0.0, 1.0])
            self.calibrated_ = False
            return self
        iso = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(risk, y)
        self.x_, self.y_ = np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float)
        self.calibrated_ = True
        return self

    def predict(self, risk: np.ndarray) -> np.ndarray:
        """Calibrated probabilities; NaN stays NaN (no risk to state)."""
        r = np.asarray(risk, float)
        out = np.interp(np.clip(r, 0, 1), self.x_, self.y_)
        return np.where(np.isfinite(r), out, np.nan)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"x": self.x_, "y": self.y_})

    @classmethod
    def from_curve(cls, x: np.ndarray, y: np.ndarray, n_blocks: int) -> "SpotRiskCalibrator":
        c = cls()
        c.x_, c.y_, c.n_blocks_, c.calibrated_ = np.asarray(x, float), np.asarray(y, float), int(n_blocks), True
        return c


def _clean(risk: np.ndarray, reclaimed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, y = np.asarray(risk, float), np.asarray(reclaimed, float)
    ok = np.isfinite(r) & np.isfinite(y)
    return np.clip(r[ok], 0, 1), y[ok]


def brier(p: np.ndarray, y: np.ndarray) -> float:
    p, y = _clean(p, y)
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")


def reliability(p: np.ndarray, y: np.ndarray, bands: tuple[float, ...] = BANDS) -> pd.DataFrame:
    """Per predicted-risk band: blocks, mean predicted, realized reclaim rate."""
    p, y = _clean(p, y)
    b = pd.cut(p, list(bands[:-1]) + [bands[-1] + 1e-9], include_lowest=True, right=True)
    t = pd.DataFrame({"band": b, "p": p, "y": y}).groupby("band", observed=True).agg(
        blocks=("y", "size"), predicted=("p", "mean"), realized=("y", "mean")).reset_index()
    t["band"] = t["band"].map(lambda iv: f"{max(iv.left, 0):.2f}-{min(iv.right, 1):.2f}")
    return t


@dataclass
class CalibrationReport:
    calibrator: SpotRiskCalibrator      # refit on every block: what pricing applies from now on
    early_origins: list[pd.Timestamp]   # chose the map
    later_origins: list[pd.Timestamp]   # scored it
    summary: pd.DataFrame               # raw / calibrated / constant on the later origins
    bands: pd.DataFrame                 # reliability by band, raw and calibrated, later origins

    @property
    def adopted(self) -> bool:
        """Use the map only when, on the later origins, it beat the raw score on both Brier and the
        gap between mean predicted and realized: a map that drifts wrong is not published."""
        if not self.calibrator.calibrated_ or self.summary.empty:
            return False
        s = self.summary.set_index("risk")
        gap = (s["mean_predicted"] - s["realized"]).abs()
        return bool(s.loc["calibrated", "brier"] < s.loc["raw", "brier"] and gap["calibrated"] <= gap["raw"])


def calibrate_on_early(spot: pd.DataFrame, early_share: float = 0.5, min_blocks: int = 200) -> CalibrationReport:
    """Fit on the blocks of the earlier origins, score on the later ones (nothing from the later
    origins chooses the map), then refit on all blocks for use. `spot` needs origin,
    interruption_risk, reclaimed."""
    origins = sorted(pd.unique(spot["origin"]))
    k = max(1, int(round(len(origins) * early_share)))
    early, later = origins[:k], origins[k:]
    tr, te = spot[spot["origin"].isin(early)], spot[spot["origin"].isin(later)]
    cal = SpotRiskCalibrator(min_blocks).fit(tr["interruption_risk"], tr["reclaimed"])
    y = te["reclaimed"].to_numpy(float)
    raw = te["interruption_risk"].to_numpy(float)
    fitted = cal.predict(raw)
    const = float(tr["reclaimed"].mean()) if len(tr) else float("nan")
    rows = []
    for name, p in (("raw", raw), ("calibrated", fitted), ("constant (early rate)", np.full(len(te), const))):
        rows.append({"risk": name, "blocks": len(te), "mean_predicted": float(np.nanmean(p)) if len(te) else np.nan,
                     "realized": float(np.nanmean(y)) if len(te) else np.nan, "brier": brier(p, y)})
    bands = pd.concat([reliability(raw, y).assign(risk="raw"), reliability(fitted, y).assign(risk="calibrated")],
                      ignore_index=True)
    final = SpotRiskCalibrator(min_blocks).fit(spot["interruption_risk"], spot["reclaimed"])
    return CalibrationReport(final, list(early), list(later), pd.DataFrame(rows), bands)


def reliability_chart(bands: pd.DataFrame, title: str) -> bytes:
    """Predicted vs realized reclaim rate per band, raw and calibrated, with the diagonal."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), dpi=100)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfectly calibrated")
    for name, style in (("raw", dict(marker="o", color="tab:red")), ("calibrated", dict(marker="s", color="tab:blue"))):
        b = bands[bands["risk"] == name]
        big = b[b["blocks"] >= MIN_BAND_BLOCKS]
        ax.plot(big["predicted"], big["realized"], lw=1.5, label=f"{name} risk", **style)
        small = b[b["blocks"] < MIN_BAND_BLOCKS]  # a handful of blocks says little: hollow, unjoined
        ax.scatter(small["predicted"], small["realized"], s=18, facecolors="none", edgecolors=style["color"])
        for r in b.itertuples(index=False):
            ax.annotate(f"{r.blocks}", (r.predicted, r.realized), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color=style["color"])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"predicted interruption risk (band mean; hollow: under {MIN_BAND_BLOCKS} blocks)")
    ax.set_ylabel("realized: share of blocks cut short at a sample")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def apply_spot_calibration(items: pd.DataFrame, calibration: dict | None) -> pd.DataFrame:
    """Spot items' published risk through the newest adopted backtest calibration (the raw score
    kept as `interruption_risk_raw`). Items kept from the last sheet are calibrated already."""
    items = items.copy()
    held = items["guardrails"].map(lambda g: isinstance(g, (list, tuple)) and any(
        str(x).startswith("hold_last:") for x in g))
    spot = (items["product"] == "spot") & ~held
    items["interruption_risk_raw"] = items["interruption_risk"].where(spot)
    if calibration is not None and spot.any():
        cal = SpotRiskCalibrator.from_curve(calibration["x"], calibration["y"], calibration["n_blocks"])
        items.loc[spot, "interruption_risk"] = cal.predict(items.loc[spot, "interruption_risk"].to_numpy(float))
    return items
