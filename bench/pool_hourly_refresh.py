"""pool_hourly refresh: what the sample-level minimum (`idle_gpus_min`) costs.

The refresh now also computes, per pool-hour, the fewest idle GPUs at any sample time (each node
carried at its latest sample). Baseline: the same refresh without that part (the mean-only SQL
of warehouse version 5), in the same process on the same warehouse, alternating runs so machine
load hits both sides. Telemetry is generated in DuckDB: POOLS pools x NODES nodes x HOURS hours
at one sample a minute, each node's clock offset by a few seconds (unaligned samples).

Run: `.venv/bin/python bench/pool_hourly_refresh.py [--pools 100 --nodes 20 --hours 24 --rounds 3]`
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from warehouse import pool_hourly  # noqa: E402
from warehouse.db import connect  # noqa: E402

# warehouse version 5's refresh: means and coverage only (idle_gpus_min left NULL)
BASELINE_SQL = """
INSERT INTO pool_hourly
WITH dirty AS (SELECT DISTINCT pool, ts FROM pool_hourly_dirty),
samples AS (
    SELECT t.pool, d.ts AS hour, t.node_id, t.gpu_model, t.gpus_total,
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
expected AS (
    SELECT d.pool, d.ts AS hour, count(*) AS nodes_expected,
           sum(3600.0 / n.sample_interval_s) AS samples_expected
    FROM dirty d JOIN nodes n
      ON n.pool = d.pool AND n.first_seen < d.ts + INTERVAL 1 HOUR AND n.last_seen >= d.ts
    GROUP BY d.pool, d.ts
)
SELECT h.pool, h.hour, any_value(h.gpu_model), sum(h.total), sum(h.busy), sum(h.total) - sum(h.busy),
       least(1.0, sum(h.n) / greatest(any_value(e.samples_expected), 1)), sum(h.n),
       count(*), greatest(any_value(e.nodes_expected), count(*)), min(h.quality_flag), now(), NULL
FROM node_hour h LEFT JOIN expected e ON e.pool = h.pool AND e.hour = h.hour
GROUP BY h.pool, h.hour
"""


def build(path: Path, pools: int, nodes: int, hours: int) -> int:
    con = connect(path)
    con.execute(f"""
        INSERT INTO telemetry (ts, node_id, pool, gpu_model, gpus_total, gpus_allocated, gpu_util, source,
                               quality_flag, ingest_id)
        SELECT TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(m * 60 + (n % 50)),
               'p' || p || '-n' || n, 'p' || p, 'H100', 8, (hash(p, n, m // 17) % 9)::INTEGER, NULL, 'bench', NULL, 1
        FROM range({pools}) a(p), range({nodes}) b(n), range({hours * 60}) c(m)""")
    con.execute(f"""
        INSERT INTO nodes SELECT 'p' || p || '-n' || n, 'p' || p, 'H100', 8, 60,
               TIMESTAMPTZ '2026-01-01 00:00:00+00', TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_hours({hours}), 'bench'
        FROM range({pools}) a(p), range({nodes}) b(n)""")
    con.execute("INSERT INTO pools SELECT DISTINCT pool, 'H100', NULL, NULL FROM nodes")
    rows = con.execute("SELECT count(*) FROM telemetry").fetchall()[0][0]
    con.close()
    return int(rows)


def timed(path: Path, sql: str | None) -> float:
    """One full refresh (every hour dirty) with the given SQL (None = the shipped refresh)."""
    con = connect(path)
    try:
        con.execute("DELETE FROM pool_hourly")
        con.execute("INSERT INTO pool_hourly_dirty SELECT DISTINCT pool, date_trunc('hour', ts) FROM telemetry")
        t = time.perf_counter()
        if sql is None:
            pool_hourly.refresh(con)
        else:
            con.execute("BEGIN TRANSACTION")
            con.execute(sql, {"threshold": 5.0})
            con.execute("DELETE FROM pool_hourly_dirty")
            con.execute("COMMIT")
        return time.perf_counter() - t
    finally:
        con.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pools", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        rows = build(path, a.pools, a.nodes, a.hours)
        base, new = [], []
        for _ in range(a.rounds):
            base.append(timed(path, BASELINE_SQL))
            new.append(timed(path, None))
        b, n = statistics.median(base), statistics.median(new)
        print(f"{a.pools} pools x {a.nodes} nodes x {a.hours} h at 1/min = {rows:,} samples, {a.rounds} rounds")
        print(f"baseline (means only):           median {b:.2f} s  ({rows / b / 1e6:.1f} M samples/s)")
        print(f"with sample-level idle_gpus_min: median {n:.2f} s  ({rows / n / 1e6:.1f} M samples/s)")
        print(f"ratio (with / baseline): {n / b:.2f}")


if __name__ == "__main__":
    main()
