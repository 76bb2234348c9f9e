"""pool_hourly from a real DuckDB file: coverage, idle rules, missing data, incremental == rebuild."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from warehouse import pool_hourly
from warehouse.ingest import IngestRules, ingest_file
from warehouse.synthetic import FleetSpec, write_fleet

RULES = IngestRules(now=datetime(2026, 3, 1, tzinfo=timezone.utc))


def frame(nodes: int = 2, minutes: int = 180, alloc=lambda m, i: 4, util=None) -> pd.DataFrame:
    ts = pd.date_range("2026-01-01", periods=minutes, freq="min", tz="UTC")
    parts = []
    for i in range(nodes):
        parts.append(pd.DataFrame({
            "ts": ts, "node_id": f"n{i}", "pool": "p1", "gpu_model": "H100", "gpus_total": 8,
            "gpus_allocated": [alloc(m, i) for m in range(minutes)] if util is None else None,
            "gpu_util": [util(m, i) for m in range(minutes)] if util is not None else 50.0,
        }))
    return pd.concat(parts, ignore_index=True)


def hourly(con) -> pd.DataFrame:
    return con.execute("SELECT * FROM pool_hourly ORDER BY pool, ts").df()


def test_idle_gpu_hours_and_full_coverage(con, tmp_path: Path) -> None:
    frame(alloc=lambda m, i: 2 if m < 60 else 6).to_parquet(tmp_path / "a.parquet")
    ingest_file(con, tmp_path / "a.parquet", rules=RULES)
    r = pool_hourly.refresh(con)
    h = hourly(con)
    assert r.hours_refreshed == 3 and len(h) == 3
    assert h.gpus_total.tolist() == [16, 16, 16]
    assert h.idle_gpu_hours.tolist() == [12, 4, 4]  # 2 nodes x (8 - 2), then 2 x (8 - 6)
    assert h.coverage.tolist() == [1, 1, 1] and h.nodes_reporting.tolist() == [2, 2, 2]


def test_missing_data_lowers_coverage_and_missing_hours_have_no_row(con, tmp_path: Path) -> None:
    df = frame(minutes=180)
    gap = (df.node_id == "n1") & (df.ts >= "2026-01-01 01:00") & (df.ts < "2026-01-01 01:30")
    whole_hour = df.ts.dt.hour == 2
    df[~gap & ~whole_hour].to_parquet(tmp_path / "a.parquet")
    # the pool also reports later, so hour 2 is a real gap inside its life
    frame(minutes=60).assign(ts=lambda d: d.ts + pd.Timedelta(hours=3)).to_parquet(tmp_path / "b.parquet")
    ingest_file(con, tmp_path / "a.parquet", rules=RULES)
    ingest_file(con, tmp_path / "b.parquet", rules=RULES)
    pool_hourly.refresh(con)
    h = hourly(con).set_index(hourly(con).ts.dt.hour)
    assert 2 not in h.index  # never silently zero
    assert h.loc[1, "coverage"] == pytest.approx(90 / 120)
    assert h.loc[1, "nodes_reporting"] == 2 and h.loc[0, "coverage"] == 1


def test_utilization_decides_idle_when_allocation_is_unknown(con, tmp_path: Path) -> None:
    # n0 busy (util 80), n1 idle (util 2 < 5 % threshold)
    frame(minutes=60, util=lambda m, i: 80.0 if i == 0 else 2.0).to_parquet(tmp_path / "u.parquet")
    ingest_file(con, tmp_path / "u.parquet", rules=RULES)
    pool_hourly.refresh(con, idle_util_threshold=5.0)
    assert hourly(con).idle_gpu_hours.tolist() == [8]
    pool_hourly.rebuild(con, idle_util_threshold=1.0)  # stricter threshold: n1 now counts busy
    assert hourly(con).idle_gpu_hours.tolist() == [0]


def test_quality_flag_carries_to_the_hour(con, tmp_path: Path) -> None:
    df = frame(nodes=1, minutes=120)
    df["quality_flag"] = None
    df.loc[df.ts.dt.hour == 1, "quality_flag"] = "helios_blackout"
    df.to_parquet(tmp_path / "f.parquet")
    ingest_file(con, tmp_path / "f.parquet", rules=RULES)
    pool_hourly.refresh(con)
    flags = con.execute("SELECT quality_flag FROM pool_hourly ORDER BY ts").fetchall()
    assert flags == [(None,), ("helios_blackout",)]


def test_refresh_touches_only_changed_hours(con, tmp_path: Path) -> None:
    df = frame(minutes=180)
    df.to_parquet(tmp_path / "a.parquet")
    ingest_file(con, tmp_path / "a.parquet", rules=RULES)
    pool_hourly.refresh(con)
    before = hourly(con)
    fix = df[df.ts.dt.hour == 1].copy()
    fix["gpus_allocated"] = 8
    fix.to_parquet(tmp_path / "fix.parquet")
    ingest_file(con, tmp_path / "fix.parquet", rules=RULES)
    r = pool_hourly.refresh(con)
    after = hourly(con)
    assert r.hours_refreshed == 1
    assert after.refreshed_at[0] == before.refreshed_at[0] and after.refreshed_at[2] == before.refreshed_at[2]
    assert after.idle_gpu_hours[1] == 0 and before.idle_gpu_hours[1] == 8
    assert pool_hourly.refresh(con).hours_refreshed == 0  # nothing left dirty


def test_incremental_refresh_equals_full_rebuild_on_a_synthetic_fleet(con, tmp_path: Path) -> None:
    spec = FleetSpec(pools=3, nodes_per_pool=4, days=3, interval_s=300, seed=3, outage_rate=0.05)
    files = write_fleet(spec, tmp_path / "fleet", file_per="day")
    for f in files.telemetry:
        ingest_file(con, f, rules=RULES)
        pool_hourly.refresh(con)  # nightly-style: refresh after every file
    cols = "pool, ts, gpus_total, gpus_busy, idle_gpu_hours, coverage, samples, nodes_reporting, nodes_expected"
    incremental = con.execute(f"SELECT {cols} FROM pool_hourly ORDER BY pool, ts").fetchall()
    pool_hourly.rebuild(con)
    rebuilt = con.execute(f"SELECT {cols} FROM pool_hourly ORDER BY pool, ts").fetchall()
    assert incremental == rebuilt and len(rebuilt) > 3 * 60
    dup = con.execute("SELECT count(*) FROM (SELECT pool, ts FROM pool_hourly GROUP BY ALL HAVING count(*) > 1)")
    assert dup.fetchall()[0][0] == 0
    assert con.execute("SELECT min(coverage) FROM pool_hourly").fetchall()[0][0] < 1  # outages show


def test_idle_gpus_min_is_the_fewest_idle_at_any_sample(con, tmp_path: Path) -> None:
    """Two nodes on offset clocks: the pool's idle at each sample time carries each node at its latest
    sample; the hour's minimum is where both dips overlap, which the hourly mean hides."""
    ts_a = pd.date_range("2026-01-01 00:00", periods=12, freq="5min", tz="UTC")
    ts_b = pd.date_range("2026-01-01 00:02", periods=12, freq="5min", tz="UTC")
    alloc_a = [2] * 12
    alloc_a[5] = 7                        # 00:25: node a down to 1 idle ...
    alloc_b = [3] * 12
    alloc_b[4:6] = [8, 8]                 # 00:22-00:31: ... while node b has 0 idle
    rows = [pd.DataFrame({"ts": ts, "node_id": n, "pool": "p1", "gpu_model": "H100", "gpus_total": 8,
                          "gpus_allocated": al, "gpu_util": None})
            for n, ts, al in (("a", ts_a, alloc_a), ("b", ts_b, alloc_b))]
    pd.concat(rows, ignore_index=True).to_parquet(tmp_path / "a.parquet")
    ingest_file(con, tmp_path / "a.parquet", rules=RULES)
    pool_hourly.refresh(con)
    h = hourly(con).iloc[0]
    # brute force over every sample time, each node at its latest sample (first one before it has any)
    events = sorted(set(ts_a) | set(ts_b))

    def at(ts, alloc, t):
        before = [i for i, x in enumerate(ts) if x <= t]
        return 8 - alloc[before[-1] if before else 0]

    truth = min(at(ts_a, alloc_a, t) + at(ts_b, alloc_b, t) for t in events)
    assert truth == 1 and h["idle_gpus_min"] == truth
    assert h["idle_gpu_hours"] > 9  # the mean says plenty is idle
    full = hourly(con)
    pool_hourly.rebuild(con)
    pd.testing.assert_frame_equal(hourly(con).drop(columns="refreshed_at"), full.drop(columns="refreshed_at"))


COLS = ("pool, ts, gpus_total, gpus_busy, idle_gpu_hours, coverage, samples, nodes_reporting, nodes_expected, "
        "quality_flag, idle_gpus_min")


@pytest.mark.parametrize("slice_hours", [1, 5, 24, 24 * 30])
def test_sliced_backlog_refresh_equals_a_full_rebuild(con, tmp_path: Path, slice_hours: int) -> None:
    """A whole backlog refreshed `slice_hours` at a time (one transaction each) gives the same table
    as every hour in one pass, whatever the slice width, including odd widths that cut days."""
    spec = FleetSpec(pools=3, nodes_per_pool=4, days=4, interval_s=300, seed=5, outage_rate=0.05)
    for f in write_fleet(spec, tmp_path / "fleet", file_per="day").telemetry:
        ingest_file(con, f, rules=RULES)  # the backlog: no refresh in between
    r = pool_hourly.refresh(con, slice_hours=slice_hours)
    sliced = con.execute(f"SELECT {COLS} FROM pool_hourly ORDER BY pool, ts").fetchall()
    assert r.slices == -(-(4 * 24) // slice_hours) or slice_hours > 24 * 4
    assert r.rows_written == len(sliced) > 3 * 4 * 23 and r.hours_refreshed >= r.rows_written  # outages: no row
    pool_hourly.rebuild(con, slice_hours=10_000)  # one slice: the unsliced computation
    assert con.execute(f"SELECT {COLS} FROM pool_hourly ORDER BY pool, ts").fetchall() == sliced


def test_a_failed_slice_keeps_earlier_slices_and_leaves_the_rest_dirty(con, tmp_path: Path) -> None:
    spec = FleetSpec(pools=2, nodes_per_pool=2, days=3, interval_s=600, seed=2)
    for f in write_fleet(spec, tmp_path / "fleet", file_per="day").telemetry:
        ingest_file(con, f, rules=RULES)

    def boom(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt  # the process is stopped after the second slice committed

    with pytest.raises(KeyboardInterrupt):
        pool_hourly.refresh(con, slice_hours=24, on_slice=boom)
    days_done = con.execute("SELECT count(DISTINCT date_trunc('day', ts)) FROM pool_hourly").fetchall()[0][0]
    left = con.execute("SELECT count(DISTINCT date_trunc('day', ts)) FROM pool_hourly_dirty").fetchall()[0][0]
    assert (days_done, left) == (2, 1)
    assert pool_hourly.refresh(con).hours_refreshed == 2 * 24  # the next run finishes the job
    full = con.execute(f"SELECT {COLS} FROM pool_hourly ORDER BY pool, ts").fetchall()
    pool_hourly.rebuild(con)
    assert con.execute(f"SELECT {COLS} FROM pool_hourly ORDER BY pool, ts").fetchall() == full
