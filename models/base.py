"""The forecaster interface and the forecast frame contract (DESIGN.md).

Every forecaster is an sklearn-style estimator: the constructor only stores its arguments,
`fit(df, calendar=None)` learns from a long `unique_id, ds, y, gpus_total` frame and returns
self, fitted state ends in `_`. `predict(h, X_df=None, new_df=None)` returns the forecast frame
for the h hours after the history: `unique_id, ds, model, mean, q05 ... q95`, quantiles
non-crossing and inside [0, gpus_total].

X_df carries the known future: calendar rows (pool/unique_id, start, end, gpus[, run_id,
status, known_at]) as known at the forecast origin. new_df, when given, is the history to
forecast from (a newer one than fit saw) without refitting learned weights.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from features.panel import Panel, panel_from_long

QUANTILES = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)
QCOLS = [f"q{int(round(q * 100)):02d}" for q in QUANTILES]
FRAME_COLS = ["unique_id", "ds", "model", "mean", *QCOLS]


class Forecaster(BaseEstimator):
    """Base class: history handling and the output contract shared by every model."""

    #: default model name in the forecast frame (overridden by `alias`)
    model_name = "forecaster"
    alias: str | None = None

    @property
    def name(self) -> str:
        return self.alias or self.model_name

    def _history(self, new_df: pd.DataFrame | None) -> Panel:
        if new_df is not None:
            return panel_from_long(new_df)
        if not hasattr(self, "panel_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(df) first")
        return self.panel_

    def fit(self, df: pd.DataFrame, calendar: pd.DataFrame | None = None) -> "Forecaster":
        raise NotImplementedError

    def predict(self, h: int, X_df: pd.DataFrame | None = None, new_df: pd.DataFrame | None = None) -> pd.DataFrame:
        raise NotImplementedError


def check_horizon(h: int) -> int:
    if int(h) != h or h < 1:
        raise ValueError(f"horizon h must be a positive whole number of hours, got {h!r}")
    return int(h)


def forecast_frame(panel: Panel, h: int, name: str, mean: np.ndarray, q: np.ndarray) -> pd.DataFrame:
    """Assemble the frame from (n, h) means and (n, h, 7) quantiles; enforce the contract.

    Quantiles are sorted per row (never cross) and, with the mean, clipped to [0, capacity],
    where capacity is the pool's last known gpus_total. A pool with no observed hour at all gets
    no rows: a forecast of nothing would read as a certain zero.
    """
    keep = panel.last_observed() >= 0
    if not keep.all():
        panel = Panel(panel.ids[keep], panel.start, panel.y[keep], panel.capacity[keep], panel.gpu_model[keep])
        mean, q = np.asarray(mean)[keep], np.asarray(q)[keep]
    n = panel.n
    cap = panel.capacity[:, -1][:, None]
    mean = np.clip(np.nan_to_num(mean, nan=0.0), 0.0, cap)
    q = np.sort(np.nan_to_num(q, nan=0.0), axis=2)
    q = np.clip(q, 0.0, cap[:, :, None])
    ds = panel.end() + pd.to_timedelta(np.arange(h), unit="h")
    out = pd.DataFrame(
        {
            "unique_id": np.repeat(panel.ids, h).astype(str),
            "ds": np.tile(ds.to_numpy(), n),
            "model": name,
            "mean": mean.ravel(),
        }
    )
    out["ds"] = pd.to_datetime(out["ds"], utc=True)
    qf = q.reshape(n * h, len(QUANTILES))
    for j, c in enumerate(QCOLS):
        out[c] = qf[:, j]
    return out


def check_forecast_frame(fc: pd.DataFrame, capacity: dict[str, float] | None = None) -> None:
    """Raise if a forecast frame breaks the contract (used by tests and before writing)."""
    missing = set(FRAME_COLS) - set(fc.columns)
    if missing:
        raise ValueError(f"forecast frame lacks {sorted(missing)}")
    q = fc[QCOLS].to_numpy()
    if np.isnan(q).any() or np.isnan(fc["mean"].to_numpy()).any():
        raise ValueError("forecast frame has NaN values")
    if (np.diff(q, axis=1) < -1e-9).any():
        raise ValueError("quantiles cross")
    if (q < -1e-9).any():
        raise ValueError("quantiles below zero")
    if capacity is not None:
        cap = fc["unique_id"].map(capacity).to_numpy(dtype=float)
        if (q > cap[:, None] + 1e-9).any():
            raise ValueError("quantiles above capacity")
