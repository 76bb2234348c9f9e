"""Baselines every report is scaled by: seasonal naive (24 h, 168 h) and persistence.

Intervals are empirical: the quantiles of the same rule's in-sample errors at the same lag
(k seasons back for seasonal naive, h hours back for persistence), per pool. No distribution
is assumed, so the skew of idle capacity (piles up at 0 and at capacity) is kept.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from features.panel import Panel, panel_from_long
from models.base import QUANTILES, Forecaster, check_horizon, forecast_frame

_MIN_ERRORS = 24  # fewer in-sample errors than this: borrow the pooled (share-scaled) quantiles


def _ffill(y: np.ndarray) -> np.ndarray:
    return pd.DataFrame(y.T).ffill().to_numpy().T


def lagged_error_quantiles(panel: Panel, lag: int) -> np.ndarray:
    """(n, 7) quantiles of y[t] - y_ffilled[t - lag] over each series' history."""
    y, yf = panel.y, _ffill(panel.y)
    n, T = y.shape
    if lag >= T:
        err = np.full((n, 1), np.nan)
    else:
        err = y[:, lag:] - yf[:, :-lag]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.nanquantile(err, QUANTILES, axis=1).T  # (n, 7)
        # pooled fallback in capacity shares, for series with few errors
        share = err / np.maximum(panel.capacity[:, -1:], 1.0)
        pooled = np.nanquantile(share, QUANTILES) if np.isfinite(share).any() else np.zeros(len(QUANTILES))
    few = (np.isfinite(err).sum(axis=1) < _MIN_ERRORS)
    if few.any():
        q[few] = np.nan_to_num(pooled)[None, :] * np.maximum(panel.capacity[few, -1:], 1.0)
    return np.nan_to_num(q)


class SeasonalNaive(Forecaster):
    """y(t) = the last observed value one season (or k seasons) earlier."""

    model_name = "seasonal_naive"

    def __init__(self, season_length: int = 24, alias: str | None = None):
        self.season_length = season_length
        self.alias = alias

    @property
    def name(self) -> str:
        return self.alias or f"snaive_{self.season_length}"

    def fit(self, df: pd.DataFrame, calendar: pd.DataFrame | None = None) -> "SeasonalNaive":
        if self.season_length < 1:
            raise ValueError("season_length must be >= 1")
        self.panel_ = panel_from_long(df)
        return self

    def predict(self, h: int, X_df: pd.DataFrame | None = None, new_df: pd.DataFrame | None = None) -> pd.DataFrame:
        h = check_horizon(h)
        panel = self._history(new_df)
        m = self.season_length
        yf = _ffill(panel.y)
        steps = np.arange(1, h + 1)
        k = -(-steps // m)
        src = panel.T + steps - 1 - m * k  # always < T
        mean = np.where(src[None, :] >= 0, yf[:, np.clip(src, 0, None)], np.nan)
        # fall back to the last observed value where a season back is before the history
        mean = np.where(np.isnan(mean), yf[:, -1:], mean)
        q = np.empty((panel.n, h, len(QUANTILES)))
        for kk in np.unique(k):
            eq = lagged_error_quantiles(panel, int(m * kk))
            cols = k == kk
            q[:, cols, :] = mean[:, cols, None] + eq[:, None, :]
        return forecast_frame(panel, h, self.name, mean, q)


class Naive(Forecaster):
    """Persistence: every step repeats the last observed hour."""

    model_name = "naive"

    _LAG_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 18, 24, 36, 48, 72, 96, 120, 168, 240, 336, 504, 720)

    def __init__(self, alias: str | None = None):
        self.alias = alias

    def fit(self, df: pd.DataFrame, calendar: pd.DataFrame | None = None) -> "Naive":
        self.panel_ = panel_from_long(df)
        return self

    def predict(self, h: int, X_df: pd.DataFrame | None = None, new_df: pd.DataFrame | None = None) -> pd.DataFrame:
        h = check_horizon(h)
        panel = self._history(new_df)
        last = _ffill(panel.y)[:, -1]
        mean = np.repeat(last[:, None], h, axis=1)
        steps = np.arange(1, h + 1)
        # error quantiles at a few lags; each step uses the nearest bucket at or above it
        buckets = np.array([b for b in self._LAG_BUCKETS if b < h] + [h])
        which = np.searchsorted(buckets, steps)
        q = np.empty((panel.n, h, len(QUANTILES)))
        for j, b in enumerate(buckets):
            cols = which == j
            if cols.any():
                q[:, cols, :] = mean[:, cols, None] + lagged_error_quantiles(panel, int(b))[:, None, :]
        return forecast_frame(panel, h, self.name, mean, q)
