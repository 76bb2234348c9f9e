"""Training-cycle calendar: versioned plans, point-in-time queries, quarantine, idempotency."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from warehouse.calendar import current_plan, ingest_calendar, plan_as_of
from warehouse.ingest import IngestRules, ingest_file
from warehouse.synthetic import FleetSpec, generate_calendar

HEADER = "run_id,pool,start,end,gpus,priority,status,known_at"
PLAN = [
    "r1,p1,2026-01-10T00:00:00Z,2026-01-12T00:00:00Z,64,1,planned,2026-01-01T00:00:00Z",
    "r1,p1,2026-01-11T00:00:00Z,2026-01-13T00:00:00Z,48,1,planned,2026-01-05T00:00:00Z",  # moved + shrunk
    "r2,p1,2026-01-15T00:00:00Z,2026-01-16T00:00:00Z,32,2,planned,2026-01-02T00:00:00Z",
    "r2,p1,2026-01-15T00:00:00Z,2026-01-16T00:00:00Z,32,2,cancelled,2026-01-08T00:00:00Z",
    "r3,p2,2026-01-20T00:00:00Z,2026-01-21T00:00:00Z,16,,,2026-01-09T00:00:00Z",  # defaults
]


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def runs(df: pd.DataFrame) -> dict[str, tuple]:
    return {r.run_id: (r.start, int(r.gpus), r.status) for r in df.itertuples()}


def test_plan_as_known_at_each_point_in_time(con, tmp_path: Path) -> None:
    r = ingest_calendar(con, write(tmp_path / "plan.csv", *PLAN))
    assert (r.status, r.rows_in, r.rows_loaded, r.rows_quarantined) == ("loaded", 5, 5, 0)
    assert plan_as_of(con, utc(2025, 12, 31)).empty
    assert runs(plan_as_of(con, utc(2026, 1, 3))) == {
        "r1": (pd.Timestamp("2026-01-10", tz="UTC"), 64, "planned"),
        "r2": (pd.Timestamp("2026-01-15", tz="UTC"), 32, "planned"),
    }
    at_6 = runs(plan_as_of(con, utc(2026, 1, 6)))
    assert at_6["r1"] == (pd.Timestamp("2026-01-11", tz="UTC"), 48, "planned")  # the revision is visible
    assert "r2" not in runs(plan_as_of(con, utc(2026, 1, 8)))  # cancelled exactly at known_at
    assert runs(plan_as_of(con, utc(2026, 1, 8), include_cancelled=True))["r2"][2] == "cancelled"
    newest = current_plan(con)
    assert set(newest.run_id) == {"r1", "r3"} and int(newest.set_index("run_id").loc["r3", "priority"]) == 0
    assert set(plan_as_of(con, utc(2026, 2, 1), pools=["p2"]).run_id) == {"r3"}
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_as_of(con, datetime(2026, 1, 6))


def test_future_versions_are_invisible_to_a_past_origin(con, tmp_path: Path) -> None:
    """Point-in-time: adding a later version must not change what an earlier origin sees."""
    write(tmp_path / "v1.csv", PLAN[0])
    ingest_calendar(con, tmp_path / "v1.csv")
    before = plan_as_of(con, utc(2026, 1, 3))
    ingest_calendar(con, write(tmp_path / "v2.csv", PLAN[1]))
    pd.testing.assert_frame_equal(plan_as_of(con, utc(2026, 1, 3)), before)
    assert int(plan_as_of(con, utc(2026, 1, 6)).gpus.iloc[0]) == 48


def test_bad_plan_rows_are_quarantined_with_reasons(con, tmp_path: Path) -> None:
    bad = {
        "missing_run_id": ",p1,2026-01-10T00:00:00Z,2026-01-11T00:00:00Z,8,1,planned,2026-01-01T00:00:00Z",
        "bad_start": "a,p1,2026-01-10 00:00:00,2026-01-11T00:00:00Z,8,1,planned,2026-01-01T00:00:00Z",
        "end_not_after_start": "b,p1,2026-01-10T00:00:00Z,2026-01-09T00:00:00Z,8,1,planned,2026-01-01T00:00:00Z",
        "gpus_not_positive": "c,p1,2026-01-10T00:00:00Z,2026-01-11T00:00:00Z,0,1,planned,2026-01-01T00:00:00Z",
        "bad_gpus": "d,p1,2026-01-10T00:00:00Z,2026-01-11T00:00:00Z,lots,1,planned,2026-01-01T00:00:00Z",
        "bad_status": "e,p1,2026-01-10T00:00:00Z,2026-01-11T00:00:00Z,8,1,maybe,2026-01-01T00:00:00Z",
        "bad_known_at": "f,p1,2026-01-10T00:00:00Z,2026-01-11T00:00:00Z,8,1,planned,soon",
        "gpus_exceed_pool_capacity": "g,p1,2026-01-10T00:00:00Z,2026-01-11T00:00:00Z,999,1,planned,2026-01-01T00:00:00Z",
    }
    # pool p1 has 8 GPUs in the inventory
    tel = tmp_path / "t.csv"
    tel.write_text("ts,node_id,pool,gpu_model,gpus_total,gpus_allocated\n2026-01-01T00:00:00Z,n1,p1,H100,8,1\n")
    ingest_file(con, tel, rules=IngestRules(now=utc(2026, 2, 1)))
    r = ingest_calendar(con, write(tmp_path / "bad.csv", PLAN[0].replace(",64,", ",8,"), *bad.values()))
    assert r.rows_loaded == 1 and r.rows_quarantined == len(bad) and r.balanced
    assert r.reasons == {k: 1 for k in bad}
    detail = con.execute("SELECT detail FROM quarantine WHERE reason = 'gpus_exceed_pool_capacity'").fetchall()
    assert detail == [("pool capacity is 8 GPUs",)]


def test_calendar_reingest_is_idempotent_and_conflicts_are_caught(con, tmp_path: Path) -> None:
    f = write(tmp_path / "plan.csv", *PLAN)
    ingest_calendar(con, f)
    again = ingest_calendar(con, f)
    forced = ingest_calendar(con, f, force=True)
    assert again.status == "skipped_same_file"
    assert (forced.rows_loaded, forced.rows_duplicate) == (0, 5)
    conflict = ingest_calendar(con, write(tmp_path / "c.csv", PLAN[0].replace(",64,", ",65,")))
    assert conflict.reasons == {"conflicts_with_stored_version": 1}
    assert con.execute("SELECT count(*) FROM training_calendar").fetchall()[0][0] == 5


def test_missing_columns_and_missing_file_fail_clearly(con, tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("run_id,pool,start\nr1,p1,2026-01-01T00:00:00Z\n")
    r = ingest_calendar(con, tmp_path / "x.csv")
    assert r.status == "failed" and "missing column(s) end, gpus, known_at" in r.error
    assert ingest_calendar(con, tmp_path / "none.csv").status == "failed"


def test_synthetic_calendar_round_trips_through_parquet(con, tmp_path: Path) -> None:
    cal = generate_calendar(FleetSpec(pools=2, days=14, seed=5))
    cal.to_parquet(tmp_path / "plan.parquet")
    r = ingest_calendar(con, tmp_path / "plan.parquet")
    assert r.status == "loaded" and r.rows_loaded == len(cal) and r.rows_quarantined == 0
    newest = cal.sort_values("known_at").groupby("run_id").tail(1)
    expected = set(newest[newest.status == "planned"].run_id)
    assert set(current_plan(con).run_id) == expected
