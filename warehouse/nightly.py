"""The nightly run log and the champion's live error over the last week (for the retrain decision)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

COLUMNS = ["night_id", "started_at", "finished_at", "status", "failed_step", "reason", "files_ingested",
           "rows_loaded", "trained", "train_reason", "forecast_id", "sheet_version", "data_through", "mlflow_run_id"]


def record_night(con: duckdb.DuckDBPyConnection, night_id: str, **fields: Any) -> None:
    """Insert or update one night's row (by column name: never by position)."""
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown nightly_runs columns {sorted(unknown)}")
    exists = con.execute("SELECT count(*) FROM nightly_runs WHERE night_id = ?", [night_id]).fetchone()[0]
    if exists:
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            con.execute(f"UPDATE nightly_runs SET {sets} WHERE night_id = ?", [*fields.values(), night_id])
    else:
        cols = ["night_id", *fields]
        con.execute(f"INSERT INTO nightly_runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [night_id, *fields.values()])


def last_nights(con: duckdb.DuckDBPyConnection, limit: int = 10) -> pd.DataFrame:
    return con.execute(f"SELECT {', '.join(COLUMNS)} FROM nightly_runs ORDER BY started_at DESC LIMIT ?", [limit]).df()


def night_offers(con: duckdb.DuckDBPyConnection, limit: int = 30) -> pd.DataFrame:
    """The last `limit` finished nights, one row per night and product of the sheet live after it.

    gpu_hours = offered GPUs x hours; list_revenue = that at the offered prices (every offered
    GPU-hour sold); expected_revenue = the demand model's expected GPU-hours sold x price (reserved
    items of sheets priced before the engine stored their expected sales count at list: an upper
    bound). A night that kept its sheet (unchanged, held) repeats that sheet's numbers; a failed
    night before any sheet has product NULL."""
    return con.execute(
        """WITH n AS (SELECT night_id, started_at, status, sheet_version FROM nightly_runs
                      WHERE status <> 'running' ORDER BY started_at DESC LIMIT ?)
           SELECT n.night_id, n.started_at, n.status, n.sheet_version, i.product,
                  sum(i.gpus_offered * i.hours) AS gpu_hours,
                  sum(i.gpus_offered * i.hours * i.price_per_gpu_hour) AS list_revenue,
                  sum(coalesce(i.expected_gpu_hours_sold, CASE WHEN i.product <> 'spot'
                                                                THEN i.gpus_offered * i.hours END)
                      * i.price_per_gpu_hour) AS expected_revenue
           FROM n LEFT JOIN price_sheet_items i ON i.version = n.sheet_version AND i.offered
           GROUP BY ALL ORDER BY n.started_at, i.product""", [limit],
    ).df()


def live_errors(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime, horizon_hours: int = 24,
                min_coverage: float = 0.5, model_version: str | None = None) -> pd.DataFrame:
    """Per pool, the stored forecasts' errors on hours that have since been observed.

    Forecast runs with an origin in [since, until), their first `horizon_hours` hours, against the
    realized idle GPUs, next to the seasonal-naive forecast (same hour a day earlier) on the same
    points: n, mae, mae_snaive. Data the forecasts never saw, so a fair 'last week' check.
    Persistence (the last hour observed before the origin) is scored on the points where that hour
    is known: n_common, with mae_common, mae_snaive_common and mae_persistence on those points.
    `model_version` keeps only that model's forecasts (the champion's, not a replaced one's)."""
    return con.execute("""
        WITH runs AS (
            SELECT forecast_id, origin FROM forecast_runs
            WHERE origin >= ? AND origin < ? AND (CAST(? AS VARCHAR) IS NULL OR model_version = ?)
        ), f AS (
            SELECT f.unique_id AS pool, f.ds, f.mean, r.origin FROM forecasts f JOIN runs r USING (forecast_id)
            WHERE f.grain = 'hour' AND f.ds < r.origin + to_hours(?) AND f.ds <= ?
        ), y AS (
            SELECT pool, ts AS ds, idle_gpu_hours AS y FROM pool_hourly
            WHERE coverage >= ? AND quality_flag IS NULL
        )
        SELECT f.pool, count(*) AS n, avg(abs(f.mean - y.y)) AS mae, avg(abs(s.y - y.y)) AS mae_snaive,
               count(p.y) AS n_common,
               avg(abs(f.mean - y.y)) FILTER (WHERE p.y IS NOT NULL) AS mae_common,
               avg(abs(s.y - y.y)) FILTER (WHERE p.y IS NOT NULL) AS mae_snaive_common,
               avg(abs(p.y - y.y)) AS mae_persistence
        FROM f JOIN y USING (pool, ds) JOIN y s ON s.pool = f.pool AND s.ds = f.ds - INTERVAL 24 HOUR
        LEFT JOIN y p ON p.pool = f.pool AND p.ds = f.origin - INTERVAL 1 HOUR
        GROUP BY f.pool ORDER BY f.pool
    """, [since, until, model_version, model_version, horizon_hours, until, min_coverage]).df()
