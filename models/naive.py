"""Baselines every report is scaled by: seasonal naive (24 h, 168 h) and persistence.

Intervals are empirical: the quantiles of the same rule's in-sample errors at the same lag
(k seasons back for seasonal naive, h hours back for persistence, plus the hours since the
pool last reported), per pool, centred on their median. No distribution is assumed, so the
skew of idle capacity (piles up at 0 and at capacity) is kept.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from features.panel import Panel, ffill_rows, panel_from_long
from models.base import QUANTILES, Forecaster, check_horizon, forecast_frame

_MIN_ERRORS = 24  # fewer in-sample errors than this: borrow the pooled (share-scaled) quantiles


def _age(y: np.ndarray) -> np.ndarray:
    """Hours since the last observed value at each index (0 where observed)."""
    pos = np.arange(y.shape[1])
    last = np.maximum.accumulate(np.where(~np.isnan(y), pos, -(10**9)), axis=1)
    return (pos - last).astype(np.int64)


def lagged_error_quantiles(panel: Panel, lag: int) -> tuple[np.ndarray, bool]:
    """(n, 7) quantiles of y[t] - y_ffilled[t - lag] per series, and whether any error existed."""
    y, yf = panel.y, ffill_rows(panel.y)
    n, T = y.shape
    if lag >= T:
        return np.zeros((n, len(QUANTILES))), False
    err = y[:, lag:] - yf[:, :-lag]
    if not np.isfinite(err).any():
        return np.zeros((n, len(QUANTILES))), False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.nanquantile(err, QUANTILES, axis=1).T  # (n, 7)
        # pooled fallback in capacity shares, for series with few errors
        share = err / np.maximum(panel.capacity[:, -1:], 1.0)
        pooled = np.nanquantile(share, QUANTILES)
    few = np.isfinite(err).sum(axis=1) < _MIN_ERRORS
    if few.any():
        q[few] = pooled[None, :] * np.maximum(panel.capacity[few, -1:], 1.0)
    # centre on the median error: a drift seen in a short history (all errors at a long lag of
    # one sign) is not a forecast; the spread and skew are kept
    q = q - q[:, [QUANTILES.index(0.5)]]
    return np.nan_to_num(q), True


def quantiles_by_lag(panel: Panel, lags) -> dict[int, np.ndarray]:
    """Error quantiles for each lag. A lag longer than any error the history holds borrows the
    longest lag that has errors, widened by sqrt(lag / that lag), so long horizons never get
    narrower (or zero-width) intervals just because the history is short."""
    out: dict[int, np.ndarray] = {}
    prev: tuple[int, np.ndarray] | None = None
    for lag in sorted({int(x) for x in lags}):
        q, ok = lagged_error_quantiles(panel, lag)
        if ok and prev is not None:
            # few errors at a long lag (a short history) understate the spread: never narrower
            # than at a shorter lag
            spread, prev_spread = q[:, -1] - q[:, 0], prev[1][:, -1] - prev[1][:, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                grow = np.where(spread > 0, np.maximum(prev_spread / spread, 1.0), 1.0)
            q = np.where((spread <= 0)[:, None], prev[1], q * grow[:, None])
        if ok:
            prev = (lag, q)
        elif prev is not None:
            q = prev[1] * np.sqrt(lag / prev[0])
        else:  # not even the shortest lag has an error: the spread of the series itself
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                dev = panel.y - np.nanmedian(panel.y, axis=1, keepdims=True)
                q = np.nan_to_num(np.nanquantile(dev, QUANTILES, axis=1).T)
        out[lag] = q
    return out


def _add_error_quantiles(mean: np.ndarray, lags: np.ndarray, panel: Panel) -> np.ndarray:
    """(n, h, 7) = mean + the error quantiles of each cell's effective lag."""
    q = np.empty(mean.shape + (len(QUANTILES),))
    table = quantiles_by_lag(panel, np.unique(lags))
    for lag, eq in table.items():
        mask = lags == lag
        rows = np.nonzero(mask)[0]
        q[mask] = mean[mask][:, None] + eq[rows]
    return q


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
        yf = ffill_rows(panel.y)
        steps = np.arange(1, h + 1)
        k = -(-steps // m)
        src = panel.T + steps - 1 - m * k  # always < T
        ok = src >= 0
        srcc = np.clip(src, 0, None)
        mean = np.where(ok[None, :], yf[:, srcc], np.nan)
        # fall back to the last observed value where a season back is before the history
        mean = np.where(np.isnan(mean), yf[:, -1:], mean)
        # a stale source (carried forward over a gap) is older than m*k: use errors at that age,
        # rounded up to whole seasons
        age = np.where(ok[None, :], _age(panel.y)[:, srcc], 0)
        lags = m * (-(-(m * k[None, :] + age) // m))
        return forecast_frame(panel, h, self.name, mean, _add_error_quantiles(mean, lags, panel))


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
        last = ffill_rows(panel.y)[:, -1]
        mean = np.repeat(last[:, None], h, axis=1)
        # the forecast's true lag is the step plus how long ago the pool last reported
        gap = np.maximum(panel.T - 1 - panel.last_observed(), 0)
        lag = np.arange(1, h + 1)[None, :] + gap[:, None]
        # each cell uses the nearest lag bucket at or above it (the largest lag is a bucket too)
        buckets = np.array(sorted({b for b in self._LAG_BUCKETS if b < lag.max()} | {int(lag.max())}))
        lags = buckets[np.searchsorted(buckets, lag)]
        return forecast_frame(panel, h, self.name, mean, _add_error_quantiles(mean, lags, panel))
