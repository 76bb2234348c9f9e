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
transaction as the load); `refresh` recomputes only those hours and clears them, one slice of
clock time (default a day) per transaction, so its memory does not grow with the backlog.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import duckdb

_REFRESH_SQL = """
INSERT INTO pool_hourly
WITH dirty AS (SELECT DISTINCT pool, ts FROM pool_hourly_dirty WHERE ts >= $lo AND ts < $hi),
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
    slices: int = 0



def _refresh_slice(con: duckdb.DuckDBPyConnection, lo: datetime, hi: datetime, threshold: float) -> tuple[int, int]:
    """Recompute the dirty pool-hours in [lo, hi) in one transaction: (pool-hours, rows written)."""
    bounds = {"lo": lo, "hi": hi}
    con.execute("BEGIN TRANSACTION")
    try:
        n_dirty = con.execute(
            "SELECT count(*) FROM (SELECT DISTINCT pool, ts FROM pool_hourly_dirty WHERE ts >= $lo AND ts < $hi)",
            bounds).fetchall()[0][0]
        con.execute(
            "DELETE FROM pool_hourly USING (SELECT DISTINCT pool, ts FROM pool_hourly_dirty "
            "WHERE ts >= $lo AND ts < $hi) d WHERE pool_hourly.pool = d.pool AND pool_hourly.ts = d.ts", bounds)
        written = con.execute(_REFRESH_SQL, {**bounds, "threshold": float(threshold)}).fetchall()[0][0]
        con.execute("DELETE FROM pool_hourly_dirty WHERE ts >= $lo AND ts < $hi", bounds)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(n_dirty), int(written)


def refresh(
    con: duckdb.DuckDBPyConnection,
    idle_util_threshold: float = 5.0,
    slice_hours: int = 24,
    on_slice: Callable[[int, int], None] | None = None,
) -> RefreshResult:
    """Recompute the pool-hours marked dirty, `slice_hours` of clock time per transaction. Idempotent.

    Slicing bounds memory by one slice's samples, not the backlog: a 28-day backfill refreshes in
    the memory of one day. A crash between slices leaves the rest marked dirty for the next run."""
    if slice_hours < 1:
        raise ValueError("slice_hours must be >= 1")
    width = timedelta(hours=slice_hours)
    starts = [r[0] for r in con.execute(
        "SELECT DISTINCT to_timestamp((epoch(ts)::BIGINT // $w) * $w) AS s FROM pool_hourly_dirty ORDER BY s",
        {"w": slice_hours * 3600}).fetchall()]
    hours = rows = 0
    for i, lo in enumerate(starts):
        n, w = _refresh_slice(con, lo, lo + width, idle_util_threshold)
        hours, rows = hours + n, rows + w
        if on_slice is not None:
            on_slice(i + 1, len(starts))
    return RefreshResult(hours_refreshed=hours, rows_written=rows, slices=len(starts))


def rebuild(con: duckdb.DuckDBPyConnection, idle_util_threshold: float = 5.0, slice_hours: int = 24) -> RefreshResult:
    """Mark every hour with telemetry dirty and refresh: the full rebuild, for repairs and checks."""
    con.execute(
        "INSERT INTO pool_hourly_dirty SELECT DISTINCT pool, date_trunc('hour', ts) FROM telemetry"
    )
    return refresh(con, idle_util_threshold, slice_hours)
