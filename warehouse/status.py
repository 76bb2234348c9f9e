"""Read-only summaries of the warehouse for `idlecap status` (per pool, per ingest, per reason)."""
from __future__ import annotations

import duckdb
import pandas as pd

_POOLS_SQL = """
WITH t AS (
    SELECT pool, count(*) AS rows, count(DISTINCT node_id) AS nodes, min(ts) AS first_ts, max(ts) AS last_ts
    FROM telemetry GROUP BY pool
), h AS (
    SELECT pool, count(*) AS hours, avg(coverage) AS mean_coverage,
           count(*) FILTER (WHERE coverage < 0.9) AS hours_under_90pct,
           count(*) FILTER (WHERE quality_flag IS NOT NULL) AS flagged_hours,
           avg(gpus_total) AS mean_gpus, avg(idle_gpu_hours / nullif(gpus_total, 0)) AS mean_idle_share
    FROM pool_hourly GROUP BY pool
), span AS (
    SELECT pool, (epoch(max(ts)) - epoch(min(ts))) / 3600 + 1 AS span_hours FROM pool_hourly GROUP BY pool
)
SELECT p.pool, p.gpu_model AS gpu, t.nodes, t.rows, t.first_ts AS first, t.last_ts AS last, h.hours,
       (span.span_hours - h.hours)::BIGINT AS missing_h, round(h.mean_coverage, 3) AS coverage,
       h.flagged_hours AS flagged_h, round(h.mean_gpus, 1) AS gpus, round(h.mean_idle_share, 3) AS idle_share
FROM pools p LEFT JOIN t USING (pool) LEFT JOIN h USING (pool) LEFT JOIN span USING (pool)
ORDER BY p.pool
"""


def pool_status(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per pool: rows, nodes, time span, hours present/missing, coverage, flagged hours."""
    return con.execute(_POOLS_SQL).df()


def ingest_status(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Files and rows by ingest kind and status."""
    return con.execute("""
        SELECT kind, status, count(*) AS files, sum(rows_in)::BIGINT AS rows_in, sum(rows_loaded)::BIGINT AS loaded,
               sum(rows_quarantined)::BIGINT AS quarantined, sum(rows_duplicate)::BIGINT AS duplicate,
               sum(rows_replaced)::BIGINT AS replaced, max(finished_at) AS last
        FROM ingest_log GROUP BY kind, status ORDER BY kind, status
    """).df()


def quarantine_status(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("""
        SELECT source, reason, count(*) AS rows, count(DISTINCT source_file) AS files
        FROM quarantine GROUP BY source, reason ORDER BY rows DESC
    """).df()


def failed_files(con: duckdb.DuckDBPyConnection, limit: int = 20) -> pd.DataFrame:
    return con.execute(
        "SELECT ingest_id, kind, source, file_path, status, error FROM ingest_log "
        "WHERE status IN ('failed', 'aborted') ORDER BY ingest_id DESC LIMIT ?",
        [limit],
    ).df()
