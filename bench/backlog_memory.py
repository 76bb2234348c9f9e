"""Peak memory of the pool_hourly refresh vs the backlog: sliced by day it must not grow.

Telemetry is generated straight into a warehouse in SQL (1-minute samples, 8 GPUs a node), all
hours marked dirty, as after a backfill of `days` days. Each refresh runs in a fresh subprocess
with the shipped [warehouse] defaults (memory_limit 4GB), and its peak RSS is read from the OS.
The unsliced refresh (one transaction over the whole backlog) is the baseline the ratio uses.

Run: `.venv/bin/python bench/backlog_memory.py [--nodes 2000 --pools 100 --days 1 4 --interval-s 60]`
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GENERATE = """
import sys; sys.path.insert(0, {repo!r})
from warehouse.db import connect
con = connect({db!r})
n, pools, days, step = {nodes}, {pools}, {days}, {interval}
con.execute(f'''
INSERT INTO telemetry
SELECT TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(m * {{step}}) AS ts, 'n' || i AS node_id,
       'pool-' || (i % {{pools}}) AS pool, 'H100', 8,
       ((hash(i, m // 30) % 9))::INTEGER AS gpus_allocated, NULL, 'bench', NULL, 1
FROM range({{n}}) r(i), range({{days}} * 86400 // {{step}}) s(m)
''')
con.execute(f'''INSERT INTO nodes SELECT 'n' || i, 'pool-' || (i % {{pools}}), 'H100', 8, {{step}},
    TIMESTAMPTZ '2026-01-01 00:00:00+00', TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_days({{days}}) - INTERVAL 1 SECOND,
    'bench' FROM range({{n}}) r(i)''')
con.execute("INSERT INTO pool_hourly_dirty SELECT DISTINCT pool, date_trunc('hour', ts) FROM telemetry")
con.close()
"""

REFRESH = """
import json, resource, sys, time; sys.path.insert(0, {repo!r})
from pipelines.settings import Settings
from pipelines.warehouse_conn import open_warehouse
from warehouse import pool_hourly
s = Settings(var_dir={var!r}, duckdb_path={db!r})
con = open_warehouse(s, "bench")
t0 = time.perf_counter()
r = pool_hourly.refresh(con, slice_hours={slice_hours})
dt = time.perf_counter() - t0
con.close()
print(json.dumps({{"seconds": dt, "rows": r.rows_written, "slices": r.slices,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run(code: str) -> str:
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    return p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--pools", type=int, default=100)
    ap.add_argument("--days", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--interval-s", type=int, default=60)
    ap.add_argument("--unsliced", action="store_true", help="also run the one-transaction refresh (baseline)")
    a = ap.parse_args()
    rows = []
    for days in a.days:
        with tempfile.TemporaryDirectory(prefix="idlecap-backlog-") as tmp:
            db = str(Path(tmp) / "w.duckdb")
            t0 = time.perf_counter()
            run(GENERATE.format(repo=str(REPO), db=db, nodes=a.nodes, pools=a.pools, days=days, interval=a.interval_s))
            gen = time.perf_counter() - t0
            samples = a.nodes * days * 86400 // a.interval_s
            for label, width in [("sliced (24 h)", 24)] + ([("unsliced", 100_000)] if a.unsliced else []):
                # the refresh clears the dirty marks: regenerate them for the second variant
                run(f"import sys; sys.path.insert(0, {str(REPO)!r}); from warehouse.db import connect; c = connect({db!r}); "
                    "c.execute(\"INSERT INTO pool_hourly_dirty SELECT DISTINCT pool, date_trunc('hour', ts) FROM telemetry "
                    "WHERE NOT EXISTS (SELECT 1 FROM pool_hourly_dirty LIMIT 1)\"); c.close()")
                out = json.loads(run(REFRESH.format(repo=str(REPO), var=tmp, db=db, slice_hours=width)))
                rows.append({"days": days, "samples_M": samples / 1e6, "refresh": label, **out, "generate_s": gen})
                print(f"{days:>3} d  {samples / 1e6:7.1f} M samples  {label:<14} {out['seconds']:7.1f} s  "
                      f"peak {out['peak_mib']:7.0f} MiB  slices {out['slices']}", flush=True)
    sliced = [r for r in rows if r["refresh"].startswith("sliced")]
    if len(sliced) >= 2:
        lo, hi = sliced[0], sliced[-1]
        print(f"\nbacklog x{hi['days'] / lo['days']:.0f}: sliced peak memory x{hi['peak_mib'] / lo['peak_mib']:.2f}, "
              f"time x{hi['seconds'] / lo['seconds']:.2f} (per sample x{(hi['seconds'] / hi['samples_M']) / (lo['seconds'] / lo['samples_M']):.2f})")


if __name__ == "__main__":
    main()
