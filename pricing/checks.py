"""Input checks that decide holds: stale telemetry and forecasts that fail sanity checks.

A held pool keeps its last published prices (marked `hold_last:<reason>`); when the whole input
is unusable (no forecast, stale telemetry) no new sheet is published and the last one stays.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from models.base import QCOLS


def forecast_problems(hourly: pd.DataFrame, caps: pd.Series, first: pd.Timestamp, hours: int) -> dict[str, str]:
    """Per pool, the first problem found in the forecast rows pricing will use (empty = sane)."""
    out: dict[str, str] = {}
    need = pd.date_range(first, periods=hours, freq="h")
    f = hourly[hourly["ds"].isin(need)]
    for pool in caps.index:
        g = f[f["unique_id"] == pool]
        q = g[["mean", *QCOLS]].to_numpy(float)
        cap = float(caps[pool])
        if g.empty:
            out[pool] = "forecast_missing"
        elif not np.isfinite(q).all():
            out[pool] = "forecast_not_finite"
        elif (q < -1e-6).any() or (q > cap + 1e-6).any():
            out[pool] = "forecast_outside_capacity"
        elif (np.diff(q[:, 1:], axis=1) < -1e-6).any():
            out[pool] = "forecast_quantiles_cross"
        elif g["ds"].nunique() < min(hours, len(need)):
            out[pool] = "forecast_hours_missing"
    return out


def stale_pools(last_seen: pd.Series, data_through: pd.Timestamp, max_hours: float) -> dict[str, str]:
    """Pools whose newest observed hour is more than max_hours behind the fleet's newest."""
    lag = (data_through - last_seen) / pd.Timedelta(hours=1)
    return {str(p): "stale_telemetry" for p, v in lag.items() if not np.isfinite(v) or v > max_hours}
