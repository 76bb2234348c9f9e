"""Forecast storage: the forecast frame (DESIGN.md) written per forecast run, replace-on-rerun."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd

_COLS = ["unique_id", "ds", "model", "mean", "q05", "q10", "q25", "q50", "q75", "q90", "q95", "gpus_total"]


@dataclass(frozen=True)
class ForecastRun:
    forecast_id: str
    origin: datetime
    data_through: datetime
    model_name: str
    model_version: str
    run_id: str
    horizon_hours: int
    daily_days: int


def write_forecast(con: duckdb.DuckDBPyConnection, run: ForecastRun, hourly: pd.DataFrame, daily: pd.DataFrame) -> int:
    """Replace this forecast_id's rows with `hourly` and `daily`, in one transaction. Rows written."""
    frames = []
    for grain, fc in (("hour", hourly), ("day", daily)):
        if len(fc):
            f = fc[_COLS].copy()
            f.insert(0, "grain", grain)
            frames.append(f)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["grain", *_COLS])
    pools = int(rows["unique_id"].nunique()) if len(rows) else 0
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM forecasts WHERE forecast_id = ?", [run.forecast_id])
        con.execute("DELETE FROM forecast_runs WHERE forecast_id = ?", [run.forecast_id])
        con.execute(
            "INSERT INTO forecast_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
            [run.forecast_id, run.origin, run.data_through, run.model_name, run.model_version, run.run_id,
             run.horizon_hours, run.daily_days, pools],
        )
        con.register("fc_rows", rows)
        con.execute(
            """INSERT INTO forecasts
               SELECT ?, grain, unique_id, ds, model, mean, q05, q10, q25, q50, q75, q90, q95, gpus_total, ?, ?
               FROM fc_rows""",
            [run.forecast_id, run.origin, run.run_id],
        )
        con.unregister("fc_rows")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return len(rows)


def latest_forecast(con: duckdb.DuckDBPyConnection, grain: str = "hour") -> pd.DataFrame:
    """The newest forecast run's rows of one grain (empty frame when none)."""
    return con.execute(
        """SELECT f.* FROM forecasts f
           WHERE f.forecast_id = (SELECT forecast_id FROM forecast_runs ORDER BY created_at DESC LIMIT 1)
             AND f.grain = ? ORDER BY unique_id, ds""",
        [grain],
    ).df()


def latest_forecast_run(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The newest forecast run's row (None when nothing was forecast yet)."""
    df = con.execute("SELECT * FROM forecast_runs ORDER BY created_at DESC LIMIT 1").df()
    return None if df.empty else df.iloc[0].to_dict()


def pool_last_observed(con: duckdb.DuckDBPyConnection, min_coverage: float, mask_flags: tuple[str, ...] = ()) -> pd.DataFrame:
    """pool, gpu_model, last_observed (newest usable hour) per pool."""
    return con.execute(
        """SELECT p.pool, p.gpu_model, max(h.ts) FILTER (WHERE h.coverage >= ? AND
                  (h.quality_flag IS NULL OR NOT list_contains(?, h.quality_flag))) AS last_observed
           FROM pools p LEFT JOIN pool_hourly h USING (pool) GROUP BY ALL ORDER BY p.pool""",
        [min_coverage, list(mask_flags)],
    ).df()
