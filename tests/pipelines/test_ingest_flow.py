"""The ingest flows on the real Prefect engine, a real DuckDB file and the bundled sample."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.settings import Settings
from warehouse.db import connect

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "helios_earth_sample.parquet"

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var")


def test_ingest_flow_loads_the_sample_quarantines_bad_rows_and_is_idempotent(settings, tmp_path: Path) -> None:
    from pipelines.ingest_flow import ingest_telemetry

    bad = tmp_path / "drop" / "bad.csv"
    bad.parent.mkdir()
    bad.write_text("ts,node_id,pool,gpu_model,gpus_total,gpus_allocated\n"
                   "2020-05-01T00:00:00Z,helios-earth/vc3sl,vc3sl,V100,64,99\n")
    broken = tmp_path / "drop" / "broken.parquet"
    broken.write_bytes(b"not parquet")
    out = ingest_telemetry(paths=[str(SAMPLE), str(bad.parent)], settings=settings)
    assert out["by_status"] == {"loaded": 2, "failed": 1}
    assert out["totals"]["rows_loaded"] == 437_760 and out["totals"]["rows_quarantined"] == 1
    assert out["pool_hourly"]["hours_refreshed"] == 16 * 456

    con = connect(settings.duckdb_path, read_only=True)
    snapshot = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                for t in ("telemetry", "pool_hourly", "quarantine", "nodes")}
    flagged = con.execute("SELECT count(*) FROM pool_hourly WHERE quality_flag = 'helios_blackout'").fetchall()
    con.close()
    assert snapshot == {"telemetry": 437_760, "pool_hourly": 7296, "quarantine": 1, "nodes": 16}
    assert flagged == [(16 * 25,)]  # the 2020-05-10 blackout day + the 05-12 15:00 hour, per VC

    again = ingest_telemetry(paths=[str(SAMPLE), str(bad.parent)], settings=settings)
    assert again["by_status"] == {"skipped_same_file": 2, "failed": 1}
    assert again["totals"]["rows_loaded"] == 0 and again["pool_hourly"]["hours_refreshed"] == 0
    con = connect(settings.duckdb_path, read_only=True)
    assert {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in snapshot} == snapshot


def test_calendar_flow(settings, tmp_path: Path) -> None:
    from pipelines.ingest_flow import ingest_calendar

    plan = tmp_path / "plan.csv"
    plan.write_text("run_id,pool,start,end,gpus,known_at\n"
                    "r1,vc3sl,2020-05-20T00:00:00Z,2020-05-21T00:00:00Z,32,2020-05-15T00:00:00Z\n")
    out = ingest_calendar(paths=[str(plan)], settings=settings)
    assert [f["status"] for f in out["files"]] == ["loaded"]
    con = connect(settings.duckdb_path, read_only=True)
    assert con.execute("SELECT run_id, gpus FROM training_calendar").fetchall() == [("r1", 32)]
