"""`pool_hourly`: (pool, hour) -> capacity, busy and idle GPUs, coverage. Built in SQL, incrementally.

Per sample, busy GPUs = gpus_allocated when known; otherwise the sample's GPUs count busy when
gpu_util >= the idle threshold (default 5 %), else idle. Per node-hour we average over the
samples seen; a pool-hour sums its reporting nodes. `idle_gpu_hours` is the mean idle GPUs of
the reporting nodes over the hour (GPU-hours in one hour). `coverage` = samples seen / samples
expected from every node of the pool alive at that hour (from the inventory's sample interval),
so a silent node or a gap lowers coverage instead of reading as zero idle. Hours with no
sample at all have no row: missing stays missing.

`idle_gpus_min` is the fewest idle GPUs the pool had at any sample time of the hour (each
reporting node carried at its latest sample): a reserved promise breaks at a sample, not on the
hourly mean, so safety is judged on this column.

Refresh is incremental: ingest records the hours it touched in pool_hourly_dirty (in the same
transaction as the load); `refresh` recomputes only those hours and clears them, atomically.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

_REFRESH_SQL = """
INSERT INTO pool_hourly
WITH dirty AS (SELECT DISTINCT pool, ts FROM pool_hourly_dirty),
samples AS (
    SELECT t.pool, d.ts AS hour, t.node_id, t.ts, t.gpu_model, t.gpus_total,
           CASE WHEN t.gpus_allocated IS NOT NULL THEN t.gpus_allocated
                WHEN t.gpu_util >= $threshold THEN t.gpus_total ELSE 0 END AS busy,
           t.quality_flag
    FROM telemetry t JOIN dirty d ON t.pool = d.pool AND date_trunc('hour', t.ts) = d.ts
    WHERE t.ts >= (SELECT min(ts) FROM dirty) AND t.ts < (SELECT max(ts) FROM dirty) + INTERVAL 1 HOUR
),
node_hour AS (
    SELECT pool, hour, node_id, any_value(gpu_model) AS gpu_model, count(*) AS n,
           avg(gpus_total) AS total, avg(busy) AS busy, min(quality_flag) AS quality_flag
    FROM samples GROUP BY pool, hour, node_id
),
-- the pool's idle GPUs at every sample time of the hour, each reporting node at its latest sample
-- (its first one back to the hour's start): a step function summed from each node's changes
changes AS (
    SELECT pool, hour, CASE WHEN prev IS NULL THEN hour ELSE ts END AS step_at, idle - coalesce(prev, 0) AS delta
    FROM (SELECT pool, hour, ts, gpus_total - busy AS idle,
                 lag(gpus_total - busy) OVER (PARTITION BY pool, hour, node_id ORDER BY ts) AS prev FROM samples)
),
steps AS (SELECT pool, hour, step_at, sum(delta) AS delta FROM changes GROUP BY pool, hour, step_at),
levels AS (
    SELECT pool, hour, sum(delta) OVER (PARTITION BY pool, hour ORDER BY step_at ROWS UNBOUNDED PRECEDING) AS idle
    FROM steps
),
hour_min AS (SELECT pool, hour, min(idle) AS idle_min FROM levels GROUP BY pool, hour),
expected AS (
    SELECT d.pool, d.ts AS hour, count(*) AS nodes_expected,
           sum(3600.0 / n.sample_interval_s) AS samples_expected
    FROM dirty d JOIN nodes n
      ON n.pool = d.pool AND n.first_seen < d.ts + INTERVAL 1 HOUR AND n.last_seen >= d.ts
    GROUP BY d.pool, d.ts
)
SELECT h.pool, h.hour, any_value(h.gpu_model), sum(h.total), sum(h.busy), sum(h.total) - sum(h.busy),
       least(1.0, sum(h.n) / greatest(any_value(e.samples_expected), 1)), sum(h.n),
       count(*), greatest(any_value(e.nodes_expected), count(*)), min(h.quality_flag), now(), any_value(m.idle_min)
FROM node_hour h LEFT JOIN expected e ON e.pool = h.pool AND e.hour = h.hour
     LEFT JOIN hour_min m ON m.pool = h.pool AND m.hour = h.hour
GROUP BY h.pool, h.hour
"""


@dataclass(frozen=True)
class RefreshResult:
    hours_refreshed: int
    rows_written: int


def refresh(con: duckdb.DuckDBPyConnection, idle_util_threshold: float = 5.0) -> RefreshResult:
    """Recompute the pool-hours marked dirty, in one transaction. Idempotent."""
    con.execute("BEGIN TRANSACTION")
    try:
        n_dirty = con.execute("SELECT count(*) FROM (SELECT DISTINCT pool, ts FROM pool_hourly_dirty)").fetchall()[0][0]
        if n_dirty == 0:
            con.execute("COMMIT")
            return RefreshResult(0, 0)
        con.execute(
            "DELETE FROM pool_hourly USING (SELECT DISTINCT pool, ts FROM pool_hourly_dirty) d "
            "WHERE pool_hourly.pool = d.pool AND pool_hourly.ts = d.ts"
        )
        after_delete = con.execute("SELECT count(*) FROM pool_hourly").fetchall()[0][0]
        con.execute(_REFRESH_SQL, {"threshold": float(idle_util_threshold)})
        after = con.execute("SELECT count(*) FROM pool_hourly").fetchall()[0][0]
        con.execute("DELETE FROM pool_hourly_dirty")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return RefreshResult(hours_refreshed=int(n_dirty), rows_written=int(after - after_delete))


def rebuild(con: duckdb.DuckDBPyConnection, idle_util_threshold: float = 5.0) -> RefreshResult:
    """Mark every hour with telemetry dirty and refresh: the full rebuild, for repairs and checks."""
    con.execute(
        "INSERT INTO pool_hourly_dirty SELECT DISTINCT pool, date_trunc('hour', ts) FROM telemetry"
    )
    return refresh(con, idle_util_threshold)
