"""Feature rows for direct multi-horizon forecasting: one row per (origin, series, horizon step).

Every feature of a row is computed from what was known at its origin: history strictly before
the origin hour, the plan as known at the origin (features.planned), and the clock of the
target hour. The horizon step `h` is itself a feature, so one global model serves every step
and sees the target hour's planned runs at every step (not only at step 1).

Values are shares of the pool's capacity at the origin so pools of 8 and 800 GPUs share one
model; the forecaster multiplies back.

Indexing convention: `o` is the grid index of the first forecast hour; hours t < o are
history; the step-h target hour is t = o + h - 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.calendar_parts import calendar_parts
from features.panel import Panel
from features.planned import PlanWindows

BASE_FEATURES = [
    "h", "hour", "dow", "weekend", "holiday", "capacity", "gpu_model",
    "y_last", "y_last_age", "mean_24", "mean_168", "std_24", "min_24", "max_24",
    "lag_day", "lag_day2", "lag_week",
]
PLAN_FEATURES = [
    "plan_t", "plan_now", "plan_lag_day", "plan_delta_day", "plan_delta_now",
    "lag_day_adj", "y_last_adj", "to_start", "to_end", "since_start",
]
MAX_LOOKBACK = 168  # hours before the origin that any feature reads


@dataclass
class PanelStats:
    """Precomputed arrays for O(1) lookups: forward-filled values and window sums."""

    yf: np.ndarray  # forward-filled y (only past values propagate)
    age: np.ndarray  # hours since the last observed value at each index
    c1: np.ndarray  # cumsum of y (NaN as 0), leading zero column
    c2: np.ndarray  # cumsum of y^2
    cn: np.ndarray  # cumsum of observed counts
    min24: np.ndarray  # min of y over the 24 h ending at each index (inclusive)
    max24: np.ndarray

    @classmethod
    def of(cls, panel: Panel) -> "PanelStats":
        y = panel.y
        ok = ~np.isnan(y)
        yf = pd.DataFrame(y.T).ffill().to_numpy().T
        pos = np.arange(panel.T)
        last = np.maximum.accumulate(np.where(ok, pos, -10**6), axis=1)
        age = (pos - last).astype(float)
        y0 = np.where(ok, y, 0.0)
        z = np.zeros((panel.n, 1))
        roll = pd.DataFrame(y.T).rolling(24, min_periods=1)
        return cls(
            min24=roll.min().to_numpy().T,
            max24=roll.max().to_numpy().T,
            yf=yf,
            age=age,
            c1=np.hstack([z, np.cumsum(y0, axis=1)]),
            c2=np.hstack([z, np.cumsum(y0 * y0, axis=1)]),
            cn=np.hstack([z, np.cumsum(ok, axis=1).astype(float)]),
        )


def _take(a: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """a[s, t] with NaN where t is outside [0, T)."""
    T = a.shape[1]
    ok = (t >= 0) & (t < T)
    out = np.full(len(s), np.nan)
    out[ok] = a[s[ok], t[ok]]
    return out


def _window(stats: PanelStats, s: np.ndarray, o: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum, sum of squares and count of observed y over [o - w, o), clipped to the grid."""
    T = stats.c1.shape[1] - 1
    hi = np.clip(o, 0, T)
    lo = np.clip(o - w, 0, T)
    return (
        stats.c1[s, hi] - stats.c1[s, lo],
        stats.c2[s, hi] - stats.c2[s, lo],
        stats.cn[s, hi] - stats.cn[s, lo],
    )


def direct_features(
    panel: Panel,
    stats: PanelStats,
    s: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    plan: PlanWindows | None = None,
    plan_o: np.ndarray | None = None,
    country: str | None = None,
    tz: str = "UTC",
    gpu_models: list[str] | None = None,
) -> pd.DataFrame:
    """Feature rows for examples (series index s, origin index o, step h), aligned arrays.

    With `plan` (PlanWindows whose origin axis is indexed by `plan_o`) the planned-run
    features are added; without it, only the history and clock features.
    """
    s = np.asarray(s, dtype=np.int64)
    o = np.asarray(o, dtype=np.int64)
    h = np.asarray(h, dtype=np.int64)
    t = o + h - 1
    T = panel.T
    cap = panel.capacity[s, np.clip(o - 1, 0, T - 1)]
    inv = 1.0 / np.maximum(cap, 1.0)
    ds = panel.start + pd.to_timedelta(t, unit="h")
    clock = calendar_parts(pd.DatetimeIndex(ds), country, tz)
    k_day = -(-h // 24)
    k_week = -(-h // 168)
    f: dict[str, np.ndarray] = {"h": h.astype(np.float32)}
    for k in ("hour", "dow", "weekend", "holiday"):
        f[k] = clock[k]
    f["capacity"] = cap
    models = gpu_models if gpu_models is not None else sorted(set(panel.gpu_model.tolist()))
    f["gpu_model"] = pd.Categorical(panel.gpu_model[s], categories=models)
    f["y_last"] = _take(stats.yf, s, o - 1) * inv
    f["y_last_age"] = _take(stats.age, s, o - 1)
    s24, q24, n24 = _window(stats, s, o, 24)
    s168, _, n168 = _window(stats, s, o, 168)
    with np.errstate(invalid="ignore", divide="ignore"):
        m24 = s24 / n24
        f["mean_24"] = m24 * inv
        f["mean_168"] = s168 / n168 * inv
        f["std_24"] = np.sqrt(np.maximum(q24 / n24 - m24 * m24, 0.0)) * inv
    f["min_24"] = _take(stats.min24, s, o - 1) * inv
    f["max_24"] = _take(stats.max24, s, o - 1) * inv
    f["lag_day"] = _take(stats.yf, s, t - 24 * k_day) * inv
    f["lag_day2"] = _take(stats.yf, s, t - 24 * (k_day + 1)) * inv
    f["lag_week"] = _take(stats.yf, s, t - 168 * k_week) * inv
    if plan is not None:
        po = np.asarray(plan_o, dtype=np.int64)
        off_t = h - 1
        p_t = plan.at("gpus", po, s, off_t) * inv
        p_now = plan.at("gpus", po, s, np.full_like(h, -1)) * inv
        p_day = plan.at("gpus", po, s, off_t - 24 * k_day) * inv
        f["plan_t"] = p_t
        f["plan_now"] = p_now
        f["plan_lag_day"] = p_day
        f["plan_delta_day"] = p_t - p_day
        f["plan_delta_now"] = p_t - p_now
        # idle moves opposite to planned GPUs: yesterday's idle at this hour, shifted by the plan change
        f["lag_day_adj"] = f["lag_day"] - (p_t - p_day)
        f["y_last_adj"] = f["y_last"] - (p_t - p_now)
        f["to_start"] = plan.at("to_start", po, s, off_t)
        f["to_end"] = plan.at("to_end", po, s, off_t)
        f["since_start"] = plan.at("since_start", po, s, off_t)
    out = pd.DataFrame(f)
    for c in out.columns:
        if c != "gpu_model" and out[c].dtype == np.float64:
            out[c] = out[c].astype(np.float32)
    return out


def direct_target(panel: Panel, s: np.ndarray, o: np.ndarray, h: np.ndarray) -> np.ndarray:
    """y at the target hour as a share of the capacity at the origin (NaN when unobserved)."""
    t = np.asarray(o) + np.asarray(h) - 1
    cap = panel.capacity[s, np.clip(np.asarray(o) - 1, 0, panel.T - 1)]
    return _take(panel.y, np.asarray(s), t) / np.maximum(cap, 1.0)
