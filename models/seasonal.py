"""Per-pool statsmodels seasonal model: MSTL (daily + weekly) with a damped-trend ETS on the
deseasonalized series, the StatsForecast MSTL recipe.

A pool with under two weeks of history drops the weekly period; under two days it falls back
to seasonal naive. Gaps are interpolated for the decomposition only (the fit never sees an
invented value as a target it is scored on: backtests score observed hours only).

Intervals: normal quantiles with the simple-exponential-smoothing variance for h steps,
sigma^2 (1 + (h-1) alpha^2), capped at twice the series' spread. Backtests measure how
calibrated that is.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import norm

from features.panel import Panel, panel_from_long
from models.base import QUANTILES, Forecaster, check_horizon, forecast_frame
from models.naive import SeasonalNaive

_Z = norm.ppf(QUANTILES)


def _odd(n: float) -> int:
    n = int(np.ceil(n))
    return n if n % 2 else n + 1


def mstl_decompose(x: np.ndarray, periods: list[int], iterate: int = 2) -> np.ndarray:
    """Seasonal components (n, len(periods)) as statsmodels' MSTL computes them (same windows,
    iterations and smoothers), but with R's `stl` jumps: the trend and low-pass loess smoothers
    are evaluated every ceil(window / 10) points and interpolated between. statsmodels
    evaluates them at every point, which made MSTL 0.3-0.4 s a pool; this is about 10x less,
    and the components differ by a few hundredths of a GPU."""
    from statsmodels.tsa.seasonal import STL

    periods = sorted(periods)
    seasonal = np.zeros((len(periods), len(x)))
    deseas = np.asarray(x, dtype=float)
    for _ in range(iterate if len(periods) > 1 else 1):
        for i, p in enumerate(periods):
            s_window = 7 + 4 * (i + 1)  # MSTL's default windows
            trend = _odd(1.5 * p / (1 - 1.5 / s_window))
            low_pass = _odd(p + 1)
            deseas = deseas + seasonal[i]
            res = STL(deseas, period=p, seasonal=s_window, trend=trend, low_pass=low_pass,
                      trend_jump=max(1, -(-trend // 10)), low_pass_jump=max(1, -(-low_pass // 10))).fit()
            seasonal[i] = res.seasonal
            deseas = deseas - seasonal[i]
    return seasonal.T


def _fill(y: np.ndarray) -> np.ndarray:
    s = pd.Series(y)
    return s.interpolate(limit_direction="both").to_numpy()


def mstl_forecast(y: np.ndarray, h: int, periods: tuple[int, ...], max_history: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (h,) and quantiles (h, 7) for one series; raises ValueError when it cannot fit."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = y[-max_history:]
    first = np.argmax(~np.isnan(y)) if (~np.isnan(y)).any() else len(y)
    y = y[first:]
    usable = [p for p in periods if len(y) >= 2 * p + 1]
    if not usable or np.isnan(y).mean() > 0.5:
        raise ValueError("history too short for any seasonal period")
    x = _fill(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if np.ptp(x) == 0:  # constant series: decomposition is degenerate; the forecast is not
            mean = np.full(h, x[-1])
            return mean, np.repeat(mean[:, None], len(QUANTILES), axis=1)
        seasonal = mstl_decompose(x, usable)
        deseason = x - seasonal.sum(axis=1)
        ets = ExponentialSmoothing(deseason, trend="add", damped_trend=True, initialization_method="estimated").fit()
        level = ets.forecast(h)
    steps = np.arange(h)
    season_fc = np.zeros(h)
    for j, p in enumerate(usable):
        # the last full cycle: position len(x) + k has the phase of len(x) - p + (k mod p)
        season_fc += seasonal[-p:, j][steps % p]
    mean = level + season_fc
    resid = deseason - ets.fittedvalues
    sigma = float(np.nanstd(resid))
    alpha = float(ets.params.get("smoothing_level", 0.5) or 0.5)
    sd = sigma * np.sqrt(1.0 + (steps) * alpha**2)
    sd = np.minimum(sd, max(sigma, float(np.nanstd(x))) * 2.0)
    q = mean[:, None] + sd[:, None] * _Z[None, :]
    return mean, q


def _safe_forecast(y: np.ndarray, h: int, periods: tuple[int, ...], max_history: int):
    try:
        return mstl_forecast(y, h, periods, max_history)
    except (ValueError, np.linalg.LinAlgError):
        return None


class MSTLForecaster(Forecaster):
    """Per-pool MSTL(24, 168) + damped ETS; seasonal-naive fallback on short or broken pools."""

    model_name = "mstl"

    def __init__(self, periods: tuple[int, ...] = (24, 168), max_history: int = 24 * 56, n_jobs: int = 1,
                 alias: str | None = None):
        self.periods = periods
        self.max_history = max_history
        self.n_jobs = n_jobs
        self.alias = alias

    def fit(self, df: pd.DataFrame, calendar: pd.DataFrame | None = None) -> "MSTLForecaster":
        # Local models: fitting is per forecast (each origin decomposes its own recent history).
        self.panel_ = panel_from_long(df)
        return self

    def predict(self, h: int, X_df: pd.DataFrame | None = None, new_df: pd.DataFrame | None = None) -> pd.DataFrame:
        h = check_horizon(h)
        panel: Panel = self._history(new_df)
        mean = np.empty((panel.n, h))
        q = np.empty((panel.n, h, len(QUANTILES)))
        periods = tuple(self.periods)
        if self.n_jobs != 1 and panel.n > 1:
            from joblib import Parallel, delayed

            results = Parallel(n_jobs=self.n_jobs)(
                delayed(_safe_forecast)(panel.y[i], h, periods, self.max_history) for i in range(panel.n))
        else:
            results = [_safe_forecast(panel.y[i], h, periods, self.max_history) for i in range(panel.n)]
        fallback = []
        for i, r in enumerate(results):
            if r is None:
                fallback.append(i)
            else:
                mean[i], q[i] = r
        if fallback:
            sub = Panel(panel.ids[fallback], panel.start, panel.y[fallback], panel.capacity[fallback], panel.gpu_model[fallback])
            sn = SeasonalNaive(min(self.periods))
            sn.panel_ = sub
            fb = sn.predict(h)  # pools with no observation at all are absent (forecast_frame drops them)
            for j, i in enumerate(fallback):
                rows = fb[fb["unique_id"] == str(panel.ids[i])]
                if len(rows) == h:
                    mean[i] = rows["mean"].to_numpy()
                    q[i] = rows[[c for c in fb.columns if c.startswith("q")]].to_numpy()
        self.fallback_ids_ = [str(panel.ids[i]) for i in fallback]
        return forecast_frame(panel, h, self.name, mean, q)
