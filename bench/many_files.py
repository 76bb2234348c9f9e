"""Many small files a night: files/s of the batched ingest vs one transaction per file.

A night of node-day files (one file per node, 1-minute samples: 1,440 rows each) is ingested
into a fresh warehouse twice in the same process: through `ingest_files` (runs of small Parquet
files in one transaction, warehouse/ingest_batch.py) and one file at a time (`batch_files=1`, the
baseline). Then the next night's files go into the batched warehouse (nodes now known), and the
first night again (every file a repeat). Target: >= 200 files/s.

Run: `.venv/bin/python bench/many_files.py [--files 2000]`
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from warehouse.db import connect  # noqa: E402
from warehouse.ingest import IngestRules, ingest_files  # noqa: E402

RULES = IngestRules(now=datetime(2026, 3, 1, tzinfo=timezone.utc))


def night(d: Path, day: str, files: int, pools: int) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    ts = pd.date_range(day, periods=1440, freq="min", tz="UTC")
    rng = np.random.default_rng(0)
    out = []
    for i in range(files):
        p = d / f"node{i:05d}.parquet"
        pd.DataFrame({"ts": ts, "node_id": f"node{i:05d}", "pool": f"pool-{i % pools:04d}", "gpu_model": "H100",
                      "gpus_total": 8, "gpus_allocated": rng.integers(0, 9, len(ts)), "gpu_util": 50.0}).to_parquet(p)
        out.append(p)
    return out


def timed(con, files: list[Path], batch_files: int) -> tuple[float, list]:
    t0 = time.perf_counter()
    r = ingest_files(con, files, rules=RULES, batch_files=batch_files)
    return time.perf_counter() - t0, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--pools", type=int, default=100)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="idlecap-many-") as tmp:
        tmp = Path(tmp)
        one = night(tmp / "d1", "2026-01-01", a.files, a.pools)
        two = night(tmp / "d2", "2026-01-02", a.files, a.pools)
        rows = []
        con = connect(tmp / "batched.duckdb")
        dt, r = timed(con, one, 500)
        assert all(x.status == "loaded" and x.balanced for x in r)
        rows.append(("first night, new nodes", "batched", dt))
        base = connect(tmp / "alone.duckdb")
        dt1, r1 = timed(base, one, 1)
        assert sum(x.rows_loaded for x in r1) == sum(x.rows_loaded for x in r)
        rows.append(("first night, new nodes", "one per file (baseline)", dt1))
        dt, r = timed(con, two, 500)
        assert all(x.status == "loaded" for x in r)
        rows.append(("next night, known nodes", "batched", dt))
        dt, r = timed(con, one, 500)
        assert all(x.status == "skipped_same_file" for x in r)
        rows.append(("first night again (repeats)", "batched", dt))
        print(f"{a.files:,} node-day files of 1,440 rows, {a.pools} pools")
        for what, how, s in rows:
            print(f"  {what:<30} {how:<25} {s:7.2f} s  {a.files / s:9,.0f} files/s")
        print(f"  batched / one-per-file speed on the first night: x{rows[1][2] / rows[0][2]:.1f}")


if __name__ == "__main__":
    main()
