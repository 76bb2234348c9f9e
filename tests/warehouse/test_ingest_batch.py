"""Small Parquet files in batches: every file gets the outcome it gets alone, and kill -9 loses nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from warehouse import pool_hourly
from warehouse.db import connect
from warehouse.ingest import IngestRules, ingest_file, ingest_files
from warehouse.ingest_batch import ingest_parquet_batch
from warehouse.synthetic import FleetSpec, write_fleet

REPO = Path(__file__).resolve().parents[2]
RULES = IngestRules(now=datetime(2026, 3, 1, tzinfo=timezone.utc))
FIELDS = ("status", "rows_in", "rows_loaded", "rows_quarantined", "rows_duplicate", "rows_replaced",
          "node_hours_replaced", "note", "reasons")


def node_files(tmp: Path, nodes: int = 12, days: int = 2, seed: int = 4) -> list[Path]:
    spec = FleetSpec(pools=3, nodes_per_pool=nodes // 3, days=days, interval_s=300, seed=seed, outage_rate=0.05)
    return list(write_fleet(spec, tmp, file_per="node-day").telemetry)


def messy_files(tmp: Path) -> list[Path]:
    """Clean node-day files plus every kind of trouble a batch must handle like single files do."""
    files = node_files(tmp / "fleet")
    base = pd.read_parquet(files[0])
    ts = pd.date_range("2026-01-10", periods=60, freq="min", tz="UTC")
    row = dict(pool="pool-00-h100", gpu_model="H100", gpus_total=8, gpu_util=None)
    bad = pd.DataFrame({"ts": ts, "node_id": "bad-rows", "gpus_allocated": np.arange(60) % 10, **row})
    bad.loc[3, "gpu_util"] = float("nan")
    bad.to_parquet(tmp / "bad_rows.parquet")                      # gpus_allocated 9 > 8: quarantined
    dup = pd.DataFrame({"ts": ts, "node_id": "dups", "gpus_allocated": 2, **row})
    dup = pd.concat([dup, dup.iloc[:5], dup.iloc[5:7].assign(gpus_allocated=3)])
    dup.to_parquet(tmp / "dups.parquet")                          # identical and conflicting in-file duplicates
    pd.DataFrame({"ts": ts, "node_id": "other-gpu", "gpus_allocated": 1, **{**row, "gpu_model": "A100"}}).to_parquet(
        tmp / "pool_mismatch.parquet")                             # pool-00-h100 holds H100
    (tmp / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    late = base.copy()
    late.loc[late.index[:12], "gpus_allocated"] = 0                # a corrected re-delivery of hour one
    late.to_parquet(tmp / "late.parquet")
    naive = pd.DataFrame({"ts": ts.tz_localize(None), "node_id": "naive", "gpus_allocated": 1, **row})
    naive.to_parquet(tmp / "naive_ts.parquet")                    # another schema: its own group
    return files[:10] + [tmp / "bad_rows.parquet", tmp / "dups.parquet", tmp / "corrupt.parquet"] + files[10:] + [
        tmp / "pool_mismatch.parquet", tmp / "naive_ts.parquet", tmp / "late.parquet", files[3]]


def snapshot(con) -> dict:
    paths = dict(con.execute("SELECT ingest_id, file_path FROM ingest_log").fetchall())
    tel = con.execute("SELECT * EXCLUDE (ingest_id), ingest_id FROM telemetry ORDER BY node_id, ts").df()
    tel["file"] = tel.pop("ingest_id").map(paths)
    q = con.execute("SELECT * EXCLUDE (ingest_id, quarantined_at), ingest_id FROM quarantine "
                    "ORDER BY source_file, row_number, reason").df()
    q["file"] = q.pop("ingest_id").map(paths)
    sup = con.execute("SELECT * EXCLUDE (ingest_id, superseded_by), superseded_by FROM telemetry_superseded "
                      "ORDER BY node_id, ts").df()
    sup["by"] = sup.pop("superseded_by").map(paths)
    pool_hourly.refresh(con)
    return {"telemetry": tel, "quarantine": q.reset_index(drop=True), "superseded": sup,
            "nodes": con.execute("SELECT * FROM nodes ORDER BY node_id").df(),
            "pools": con.execute("SELECT * FROM pools ORDER BY pool").df(),
            "hourly": con.execute("SELECT * EXCLUDE (refreshed_at) FROM pool_hourly ORDER BY pool, ts").df()}


def test_a_batch_gives_every_file_the_outcome_it_gets_alone(tmp_path: Path) -> None:
    files = messy_files(tmp_path)
    a, b = connect(tmp_path / "batched.duckdb"), connect(tmp_path / "alone.duckdb")
    batched = ingest_files(a, files, rules=RULES)
    alone = [ingest_file(b, f, rules=RULES) for f in files]
    assert [r.path for r in batched] == [str(f) for f in files]
    for x, y in zip(batched, alone):
        assert {k: getattr(x, k) for k in FIELDS} == {k: getattr(y, k) for k in FIELDS}, x.path
        assert (x.error is None) == (y.error is None) and x.balanced
    by = {Path(r.path).name: r for r in batched}
    assert by["corrupt.parquet"].status == "failed" and by["bad_rows.parquet"].rows_quarantined == 6
    assert by["dups.parquet"].rows_duplicate == 5 and by["dups.parquet"].reasons == {"conflicting_duplicate_in_file": 4}
    assert by["pool_mismatch.parquet"].reasons == {"pool_gpu_model_mismatch": 60}
    assert by["naive_ts.parquet"].reasons == {"ts_no_timezone": 60}
    assert by["late.parquet"].rows_replaced > 0 and batched[-1].status == "skipped_same_file"
    sa, sb = snapshot(a), snapshot(b)
    for name in sa:
        pd.testing.assert_frame_equal(sa[name], sb[name], obj=name)
    assert len(sa["telemetry"]) > 5000


def test_clean_files_really_go_in_batches_one_file_per_node(tmp_path: Path) -> None:
    files = node_files(tmp_path / "fleet", days=1)
    con = connect(tmp_path / "w.duckdb")
    committed: list[int] = []
    out = ingest_parquet_batch(con, files, rules=RULES, before_commit=lambda ps: committed.append(len(ps)))
    assert committed == [len(files)] and all(r.status == "loaded" and r.balanced for r in out)
    # a backfill of node-day files: a node's next day starts the next batch (one file per node a batch)
    more = node_files(tmp_path / "more", days=3, seed=9)
    committed.clear()
    out = ingest_parquet_batch(connect(tmp_path / "w2.duckdb"), more, rules=RULES,
                               before_commit=lambda ps: committed.append(len(ps)))
    assert committed == [12, 12, 12] and all(r.status == "loaded" and r.balanced for r in out)


CHILD = """
import os, sys, time
from pathlib import Path
from warehouse.db import connect
from warehouse.ingest import IngestRules
from warehouse.ingest_batch import ingest_parquet_batch
from datetime import datetime, timezone
con = connect(sys.argv[1])
files = [Path(p) for p in sys.argv[2:]]
def hold(ps):
    print("WRITTEN", len(ps), flush=True)
    time.sleep(60)
ingest_parquet_batch(con, files, rules=IngestRules(now=datetime(2026, 3, 1, tzinfo=timezone.utc)), before_commit=hold)
"""


def test_kill_9_inside_a_batch_loads_nothing_and_the_next_run_loads_every_file(tmp_path: Path) -> None:
    files = node_files(tmp_path / "fleet", days=1)
    db = tmp_path / "crash.duckdb"
    connect(db).close()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), *map(str, files)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout.readline().split() == ["WRITTEN", str(len(files))]  # every row written, not committed
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    con = connect(db)
    assert con.execute("SELECT DISTINCT status FROM ingest_log").fetchall() == [("running",)]
    for table in ("telemetry", "quarantine", "nodes", "pools", "pool_hourly_dirty", "telemetry_superseded"):
        assert con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] == 0, table
    out = ingest_files(con, files, rules=RULES)
    assert all(r.status == "loaded" and r.balanced for r in out)
    status = dict(con.execute("SELECT status, count(*) FROM ingest_log GROUP BY 1").fetchall())
    assert status == {"aborted": len(files), "loaded": len(files)}
    assert con.execute("SELECT count(*) FROM telemetry").fetchall()[0][0] == sum(r.rows_loaded for r in out) > 0
