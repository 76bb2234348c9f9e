"""A dense hourly panel: the long `unique_id, ds, y` frame as a (series x hours) matrix.

Every lag, rolling window and "value as known at the origin" is an index into this matrix, so
feature building is array indexing instead of per-series loops or wide joins. Missing and
masked hours are NaN, never zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

HOUR_NS = 3_600_000_000_000


def to_utc_hours(ds: pd.Series | pd.DatetimeIndex) -> pd.DatetimeIndex:
    """tz-aware UTC hours (naive input is taken as UTC); raises on values off the hour."""
    idx = pd.DatetimeIndex(ds)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    idx = idx.as_unit("ns")
    if len(idx) and (idx.asi8 % HOUR_NS != 0).any():
        bad = idx[idx.asi8 % HOUR_NS != 0][0]
        raise ValueError(f"ds must be whole hours; found {bad}")
    return idx


@dataclass
class Panel:
    """Series on one shared hourly grid starting at `start` (UTC).

    y: (n, T) float, NaN where missing or masked. capacity: (n, T) gpus_total, forward-filled
    (NaN before a pool's first row). gpu_model: (n,) str.
    """

    ids: np.ndarray
    start: pd.Timestamp
    y: np.ndarray
    capacity: np.ndarray
    gpu_model: np.ndarray

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def T(self) -> int:
        return self.y.shape[1]

    @property
    def ds(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, periods=self.T, freq="h", tz="UTC")

    def hour_index(self, ts: pd.Timestamp | pd.DatetimeIndex) -> np.ndarray | int:
        """Grid index of timestamps (may fall outside [0, T))."""
        start_ns = self.start.value
        if isinstance(ts, pd.Timestamp):
            return int((to_utc_hours(pd.DatetimeIndex([ts])).asi8[0] - start_ns) // HOUR_NS)
        return (to_utc_hours(ts).asi8 - start_ns) // HOUR_NS

    def end(self) -> pd.Timestamp:
        """The first hour after the grid: the natural forecast origin of this history."""
        return self.start + pd.Timedelta(hours=self.T)

    def last_observed(self) -> np.ndarray:
        """Per series, index of the last non-NaN hour (-1 when none)."""
        ok = ~np.isnan(self.y)
        last = self.T - 1 - np.argmax(ok[:, ::-1], axis=1)
        return np.where(ok.any(axis=1), last, -1)

    def to_long(self) -> pd.DataFrame:
        ds = self.ds
        return pd.DataFrame(
            {
                "unique_id": np.repeat(self.ids, self.T),
                "ds": np.tile(ds, self.n),
                "y": self.y.ravel(),
                "gpus_total": self.capacity.ravel(),
                "gpu_model": np.repeat(self.gpu_model, self.T),
            }
        )


def ffill_rows(a: np.ndarray) -> np.ndarray:
    """Carry each row's last value forward along time (only the past propagates)."""
    return pd.DataFrame(a.T).ffill().to_numpy().T


def panel_from_long(
    df: pd.DataFrame,
    end: pd.Timestamp | None = None,
    start: pd.Timestamp | None = None,
) -> Panel:
    """Build a Panel from a long frame with unique_id, ds, y, gpus_total[, gpu_model].

    The grid runs from the earliest ds (or `start`) to the latest ds (or up to, not including,
    `end`). Duplicate (unique_id, ds) pairs are an error: a panel has one value per hour.
    """
    need = {"unique_id", "ds", "y", "gpus_total"}
    missing = need - set(df.columns)
    if missing:
        raise ValueError(f"series frame lacks columns {sorted(missing)} (needs unique_id, ds, y, gpus_total)")
    if df.empty:
        raise ValueError("series frame is empty")
    ds = to_utc_hours(df["ds"])
    if pd.Index(zip(df["unique_id"].astype(str), ds.asi8)).duplicated().any():
        raise ValueError("series frame has duplicate (unique_id, ds) rows")
    ids, codes = np.unique(df["unique_id"].astype(str).to_numpy(), return_inverse=True)
    t0 = to_utc_hours(pd.DatetimeIndex([start])).asi8[0] if start is not None else ds.asi8.min()
    t_end = to_utc_hours(pd.DatetimeIndex([end])).asi8[0] if end is not None else ds.asi8.max() + HOUR_NS
    T = int((t_end - t0) // HOUR_NS)
    if T <= 0:
        raise ValueError("empty time grid: end is not after start")
    t = (ds.asi8 - t0) // HOUR_NS
    keep = (t >= 0) & (t < T)
    y = np.full((len(ids), T), np.nan)
    cap = np.full((len(ids), T), np.nan)
    yv = pd.to_numeric(df["y"], errors="raise").to_numpy(dtype=float)
    cv = pd.to_numeric(df["gpus_total"], errors="raise").to_numpy(dtype=float)
    y[codes[keep], t[keep]] = yv[keep]
    cap[codes[keep], t[keep]] = cv[keep]
    cap = ffill_rows(cap)  # forward only: capacity before a pool's first row is unknown, not borrowed from later
    if np.isnan(cap[:, -1]).any():
        # a series with no row inside the window: take its last known capacity
        last_cap = df.assign(_c=codes).sort_values("ds").groupby("_c")["gpus_total"].last()
        for i in np.flatnonzero(np.isnan(cap[:, -1])):
            cap[i] = float(last_cap.get(i, np.nan))
    if "gpu_model" in df.columns:
        gm = df.assign(_c=codes).groupby("_c")["gpu_model"].last().reindex(range(len(ids))).fillna("unknown")
        gpu_model = gm.astype(str).to_numpy()
    else:
        gpu_model = np.full(len(ids), "unknown", dtype=object)
    return Panel(ids=ids.astype(object), start=pd.Timestamp(t0, tz="UTC"), y=y, capacity=cap, gpu_model=gpu_model)
