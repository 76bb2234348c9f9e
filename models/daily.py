"""Daily totals for reserved terms: idle GPU-hours per pool per UTC day, from hourly forecasts.

mean = sum of hourly means. Quantiles = sums of hourly quantiles, which is exact when hourly
errors move together (comonotone) and otherwise too wide. Idle capacity moves in multi-hour
steps (a large job holds GPUs for hours), so errors within a day are strongly correlated, and
erring wide is the safe side for reserved capacity: we never promise hours training may need.
Only whole days (24 forecast hours) are reported.
"""
from __future__ import annotations

import pandas as pd

from models.base import QCOLS


def to_daily(hourly: pd.DataFrame) -> pd.DataFrame:
    """unique_id, ds (UTC midnight), model, mean, q05..q95, hours from an hourly forecast frame."""
    h = hourly.assign(day=hourly["ds"].dt.floor("D"))
    agg = {c: "sum" for c in ["mean", *QCOLS]}
    agg["ds"] = "size"
    g = h.groupby(["unique_id", "model", "day"], as_index=False).agg(agg).rename(columns={"ds": "hours"})
    g = g[g["hours"] == 24].rename(columns={"day": "ds"})
    return g[["unique_id", "ds", "model", "mean", *QCOLS, "hours"]].reset_index(drop=True)
