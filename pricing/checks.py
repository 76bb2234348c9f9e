"""Input checks that decide holds: stale telemetry and forecasts that fail sanity checks.

Every rule the pricing flow applies to decide between publishing, holding the last sheet and
failing lives here; `pipelines/pricing_flow.py` only wires them.

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


def telemetry_hold(as_of: pd.Timestamp, data_through: pd.Timestamp, stale_after_hours: float) -> str | None:
    """Why the whole input cannot be priced at `as_of` (the last sheet stays), or None.

    Telemetry older than `stale_after_hours` would price capacity nobody has seen lately; an
    `as_of` before the forecast's own data would price the past."""
    age = (as_of - data_through) / pd.Timedelta(hours=1)
    if age > stale_after_hours:
        return (f"stale telemetry: newest data {data_through:%Y-%m-%d %H:%M} is {age:.1f} h older than "
                f"as_of {as_of:%Y-%m-%d %H:%M} (limit {stale_after_hours} h)")
    if age < -1:
        return f"as_of {as_of} is before the forecast's data ({data_through}): nothing to price"
    return None


def pool_holds(hourly: pd.DataFrame, caps: pd.Series, first: pd.Timestamp, hours: int, last_seen: pd.Series,
               data_through: pd.Timestamp, pool_stale_hours: float) -> dict[str, str]:
    """Pools that keep their last prices, and why: a forecast that fails its checks first, else
    telemetry lagging the fleet's by more than `pool_stale_hours`."""
    hold = forecast_problems(hourly, caps, first, hours)
    stale = stale_pools(last_seen.reindex(caps.index), data_through, pool_stale_hours)
    return {**{k: v for k, v in stale.items() if k not in hold}, **hold}


def nothing_in_force_fails(sheet_in_history: bool, sheet_on_disk: bool) -> bool:
    """With no sheet in force anywhere (history or the published files the API serves), a pass
    that can sell nothing is a failure to explain, not a hold: there is nothing to keep."""
    return not (sheet_in_history or sheet_on_disk)
