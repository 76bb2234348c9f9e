"""kill -9 in the middle of a file leaves no partial load, and the next run loads it whole."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from warehouse.db import connect
from warehouse.ingest import ingest_files
from warehouse.synthetic import FleetSpec, write_fleet

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from warehouse.db import connect
from warehouse.ingest import ingest_file
con = connect(sys.argv[1])
ingest_file(con, sys.argv[2], on_begin=lambda p: print("BEGIN", flush=True))
print("COMMITTED", flush=True)
"""


def test_kill_9_mid_file_leaves_nothing_partial(tmp_path: Path) -> None:
    spec = FleetSpec(pools=10, nodes_per_pool=30, days=7, interval_s=60, seed=1)  # ~3 M rows
    fleet = write_fleet(spec, tmp_path / "fleet", file_per="single")
    big = fleet.telemetry[0]
    db = tmp_path / "crash.duckdb"
    connect(db).close()

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(big)], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout.readline().strip() == "BEGIN"
    time.sleep(0.3)  # well inside the load: the file takes seconds
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    con = connect(db)
    status = con.execute("SELECT status FROM ingest_log").fetchall()
    assert status == [("running",)]  # the start was logged; the file's transaction never committed
    for table in ("telemetry", "quarantine", "nodes", "pools", "pool_hourly_dirty"):
        assert con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] == 0, table

    [result] = ingest_files(con, [big])  # the next run marks the dead one aborted and loads everything
    assert result.status == "loaded" and result.rows_loaded == fleet.rows
    assert con.execute("SELECT count(*) FROM telemetry").fetchall()[0][0] == fleet.rows
    assert con.execute("SELECT status FROM ingest_log ORDER BY ingest_id").fetchall() == [("aborted",), ("loaded",)]
