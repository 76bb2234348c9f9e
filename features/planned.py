"""Planned-run features from the training-cycle calendar, as the plan was known at each origin.

For every forecast origin we take the newest version of each run with known_at <= origin (a
run whose newest version is cancelled does not run) and lay its GPUs over an hourly window
around the origin. Versions learned after the origin are invisible: that is what keeps
backtests honest and what a live forecast at that origin would have had.

The point-in-time selection and the window clipping run in DuckDB; laying runs onto the
(origin x series x hour) grid is a numpy difference array, with no per-row Python loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from features.panel import HOUR_NS, to_utc_hours

CAP_HOURS = 48  # "hours to next start/end" saturate here: beyond two days the exact count adds nothing

_PLAN_SQL = """
WITH o AS (SELECT * FROM origins_df),
c AS (SELECT * FROM cal_df),
v AS (
    SELECT o.o_idx, o.origin_ns, c.*
    FROM o JOIN c ON c.known_ns <= o.origin_ns
    QUALIFY row_number() OVER (PARTITION BY o.o_idx, c.run_id ORDER BY c.known_ns DESC) = 1
)
SELECT v.o_idx, s.s_idx, v.gpus, v.start_ns - v.origin_ns AS s_rel, v.end_ns - v.origin_ns AS e_rel
FROM v JOIN series_df s ON s.unique_id = v.unique_id
WHERE v.status = 'planned'
  AND v.end_ns > v.origin_ns + $lo * 3600000000000
  AND v.start_ns < v.origin_ns + $hi * 3600000000000
"""


def normalize_calendar(calendar: pd.DataFrame | None) -> pd.DataFrame:
    """Calendar rows as unique_id, run_id, start, end, gpus, status, known_at (UTC).

    Accepts `pool` or `unique_id`; a missing `known_at` means known since forever (a plan
    given explicitly for one forecast); a missing `status` means planned.
    """
    cols = ["unique_id", "run_id", "start", "end", "gpus", "status", "known_at"]
    if calendar is None or len(calendar) == 0:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    cal = calendar.rename(columns={"pool": "unique_id"}).copy()
    need = {"unique_id", "start", "end", "gpus"} - set(cal.columns)
    if need:
        raise ValueError(f"calendar lacks columns {sorted(need)} (needs pool/unique_id, start, end, gpus)")
    if "run_id" not in cal:
        cal["run_id"] = [f"run-{i}" for i in range(len(cal))]
    if "status" not in cal:
        cal["status"] = "planned"
    if "known_at" not in cal:
        cal["known_at"] = pd.Timestamp("1970-01-01", tz="UTC")
    for c in ("start", "end", "known_at"):
        cal[c] = pd.to_datetime(cal[c], utc=True)
    bad = cal["end"] <= cal["start"]
    if bad.any():
        raise ValueError(f"calendar run {cal.loc[bad, 'run_id'].iloc[0]!r} ends before it starts")
    return cal[cols].reset_index(drop=True)


def plan_as_of(calendar: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    """The newest planned version of each run known at `origin` (frame-level twin of the SQL)."""
    cal = normalize_calendar(calendar)
    cal = cal[cal["known_at"] <= origin]
    newest = cal.sort_values(["run_id", "known_at"], kind="stable").drop_duplicates("run_id", keep="last")
    return newest[newest["status"] == "planned"].reset_index(drop=True)


@dataclass
class PlanWindows:
    """Planned GPUs per (origin, series, hour offset) for offsets lo..hi-1 around each origin.

    gpus[o, s, w]       GPUs of runs planned in hour origin + (lo + w) hours
    to_start[o, s, w]   hours from that hour to the next planned start (0 = starts then), capped
    to_end[o, s, w]     hours to the next planned end, capped
    since_start[...]    hours since the latest planned start at or before that hour, capped
    """

    lo: int
    hi: int
    gpus: np.ndarray
    to_start: np.ndarray
    to_end: np.ndarray
    since_start: np.ndarray

    def at(self, name: str, o: np.ndarray, s: np.ndarray, off: np.ndarray) -> np.ndarray:
        """Values for examples (origin index, series index, hour offset from origin)."""
        w = np.clip(off - self.lo, 0, self.hi - self.lo - 1)
        return getattr(self, name)[o, s, w]


def _next_distance(events: np.ndarray, cap: int) -> np.ndarray:
    """Per position, distance to the next position (>=) where events is true, capped."""
    W = events.shape[-1]
    pos = np.arange(W)
    idx = np.where(events, pos, W + cap)
    nxt = np.minimum.accumulate(idx[..., ::-1], axis=-1)[..., ::-1]
    return np.minimum(nxt - pos, cap).astype(np.int8 if cap <= 127 else np.int16)


def _prev_distance(events: np.ndarray, cap: int) -> np.ndarray:
    """Per position, distance back to the latest position (<=) where events is true, capped."""
    pos = np.arange(events.shape[-1])
    idx = np.where(events, pos, -cap - 1)
    prv = np.maximum.accumulate(idx, axis=-1)
    return np.minimum(pos - prv, cap).astype(np.int8 if cap <= 127 else np.int16)


def plan_windows(
    calendar: pd.DataFrame | None,
    series_ids: np.ndarray,
    origins: pd.DatetimeIndex,
    lo: int,
    hi: int,
    cap: int = CAP_HOURS,
) -> PlanWindows:
    """Point-in-time plan features for every origin and series over hour offsets [lo, hi)."""
    origins = to_utc_hours(origins)
    n_o, n_s, W = len(origins), len(series_ids), hi - lo
    # extend the window by `cap` on both sides so distances near the edges are right
    elo, ehi = lo - cap, hi + cap
    EW = ehi - elo
    diff = np.zeros((n_o, n_s, EW + 1), dtype=np.float32)
    starts = np.zeros((n_o, n_s, EW), dtype=bool)
    ends = np.zeros((n_o, n_s, EW), dtype=bool)
    cal = normalize_calendar(calendar)
    if len(cal) and n_o and n_s:
        cal_df = pd.DataFrame(
            {
                "unique_id": cal["unique_id"].astype(str),
                "run_id": cal["run_id"].astype(str),
                "gpus": pd.to_numeric(cal["gpus"]).astype(float),
                "status": cal["status"].astype(str),
                "start_ns": cal["start"].dt.as_unit("ns").astype("int64"),
                "end_ns": cal["end"].dt.as_unit("ns").astype("int64"),
                "known_ns": cal["known_at"].dt.as_unit("ns").astype("int64"),
            }
        )
        origins_df = pd.DataFrame({"o_idx": np.arange(n_o), "origin_ns": origins.asi8})
        series_df = pd.DataFrame({"s_idx": np.arange(n_s), "unique_id": np.asarray(series_ids, dtype=str)})
        con = duckdb.connect()
        try:
            for name, frame in (("cal_df", cal_df), ("origins_df", origins_df), ("series_df", series_df)):
                con.register(name, frame)
            rows = con.execute(_PLAN_SQL, {"lo": elo, "hi": ehi}).df()
        finally:
            con.close()
        if len(rows):
            o = rows["o_idx"].to_numpy()
            s = rows["s_idx"].to_numpy()
            g = rows["gpus"].to_numpy(dtype=np.float32)
            # floor for the start (its hour counts), ceil for the end (a partial last hour counts)
            so = rows["s_rel"].to_numpy() // HOUR_NS - elo
            eo = -(-rows["e_rel"].to_numpy() // HOUR_NS) - elo
            np.add.at(diff, (o, s, np.clip(so, 0, EW)), g)
            np.add.at(diff, (o, s, np.clip(eo, 0, EW)), -g)
            inw = (so >= 0) & (so < EW)
            starts[o[inw], s[inw], so[inw]] = True
            inw = (eo >= 0) & (eo < EW)
            ends[o[inw], s[inw], eo[inw]] = True
    gpus = np.cumsum(diff, axis=-1)[..., :EW]
    inner = slice(cap, cap + W)
    return PlanWindows(
        lo=lo,
        hi=hi,
        gpus=np.maximum(gpus[..., inner], 0.0),
        to_start=_next_distance(starts, cap)[..., inner],
        to_end=_next_distance(ends, cap)[..., inner],
        since_start=_prev_distance(starts, cap)[..., inner],
    )


def event_hours(calendar: pd.DataFrame | None, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """(unique_id, ds) hours in which a planned run starts or ends (newest plan, or as of).

    Backtests report these hours apart from the rest: transitions are where a forecast that
    ignores the calendar fails, and where reclaim risk is highest.
    """
    cal = normalize_calendar(calendar)
    if as_of is not None:
        plan = plan_as_of(cal, as_of)
    else:
        plan = cal.sort_values(["run_id", "known_at"], kind="stable").drop_duplicates("run_id", keep="last")
        plan = plan[plan["status"] == "planned"]
    if plan.empty:
        return pd.DataFrame({"unique_id": pd.Series(dtype=str), "ds": pd.Series(dtype="datetime64[ns, UTC]")})
    s = plan["start"].dt.floor("h")
    e = plan["end"].dt.ceil("h") - pd.Timedelta(hours=1)  # last hour the run holds GPUs
    out = pd.concat(
        [
            pd.DataFrame({"unique_id": plan["unique_id"].astype(str), "ds": s}),
            pd.DataFrame({"unique_id": plan["unique_id"].astype(str), "ds": e + pd.Timedelta(hours=1)}),
        ]
    )
    return out.drop_duplicates().reset_index(drop=True)
