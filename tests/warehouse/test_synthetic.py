"""The synthetic fleet is deterministic, honours the data contracts, and its calendar drives idle capacity."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse.synthetic import (
    TELEMETRY_SCHEMA,
    FleetSpec,
    generate_calendar,
    generate_pool_busy,
    generate_telemetry,
    pool_names,
    write_fleet,
)

# Small and fast: 3 pools x 4..6 nodes, 5-minute samples.
SPEC = FleetSpec(pools=3, nodes_per_pool=(4, 5, 6), days=3, interval_s=300, seed=7, outage_rate=0.03, pool_gap_hours=3)
# Long enough for many runs, hourly frames only (no telemetry).
LONG = FleetSpec(pools=4, nodes_per_pool=16, days=42, seed=11)


def _telemetry(spec: FleetSpec) -> pa.Table:
    return pa.concat_tables(list(generate_telemetry(spec)))


def _planned(spec: FleetSpec, calendar: pd.DataFrame) -> pd.DataFrame:
    """Planned GPUs per pool-hour of the newest plan, computed the slow obvious way."""
    busy = generate_pool_busy(spec, calendar)[["unique_id", "ds"]].copy()
    busy["planned"] = 0
    newest = calendar.sort_values("known_at").groupby("run_id").tail(1)
    for run in newest[newest["status"] == "planned"].itertuples():
        on = (busy["unique_id"] == run.pool) & (busy["ds"] >= run.start) & (busy["ds"] < run.end)
        busy.loc[on, "planned"] += run.gpus
    return busy


def test_pool_names_and_spec_validation():
    assert pool_names(FleetSpec(pools=5)) == [
        "pool-00-h100",
        "pool-01-a100",
        "pool-02-l40s",
        "pool-03-v100",
        "pool-04-h100",
    ]
    with pytest.raises(ValueError):
        FleetSpec(pools=2, nodes_per_pool=(4, 4, 4))
    with pytest.raises(ValueError):
        FleetSpec(start=datetime(2026, 1, 5))  # naive
    with pytest.raises(ValueError):
        FleetSpec(interval_s=7)  # does not divide a day


def test_deterministic_by_seed():
    a, b = _telemetry(SPEC), _telemetry(SPEC)
    assert a.equals(b)
    assert generate_calendar(SPEC).equals(generate_calendar(SPEC))
    other = _telemetry(replace(SPEC, seed=8))
    assert not a.equals(other)
    assert not generate_calendar(SPEC).equals(generate_calendar(replace(SPEC, seed=8)))


def test_longer_window_only_appends():
    """Generating more days does not change the calendar or the truth of the first days."""
    short, long_ = replace(LONG, days=14), LONG
    cs, cl = generate_calendar(short), generate_calendar(long_)
    assert len(cs.merge(cl)) == len(cs)
    bs, bl = generate_pool_busy(short, cs), generate_pool_busy(long_, cl)
    assert bs.equals(bl[bl["ds"] < bs["ds"].max() + pd.Timedelta(hours=1)].reset_index(drop=True))


def test_telemetry_schema_and_ranges():
    t = _telemetry(SPEC)
    assert t.schema.equals(TELEMETRY_SCHEMA)
    df = t.to_pandas()
    assert df.notna().all().all()
    assert (df["source"] == "synthetic").all()
    assert ((df["gpus_allocated"] >= 0) & (df["gpus_allocated"] <= df["gpus_total"])).all()
    assert ((df["gpu_util"] >= 0) & (df["gpu_util"] <= 100)).all()
    assert (df.loc[df["gpus_allocated"] == 0, "gpu_util"] <= 3).all()
    assert (df.loc[df["gpus_allocated"] > 0, "gpu_util"] > 10).all()
    assert not df.duplicated(["node_id", "ts"]).any()
    assert df["node_id"].str.match(r"^pool-\d\d-[a-z0-9]+/n\d{3}$").all()
    assert (df["node_id"].str.split("/").str[0] == df["pool"]).all()


def test_row_counts_are_nodes_times_samples_minus_outages():
    clean = replace(SPEC, outage_rate=0.0, pool_gap_hours=0)
    samples = clean.days * 86400 // clean.interval_s
    assert _telemetry(clean).num_rows == sum(clean.nodes_per_pool) * samples

    df = _telemetry(SPEC).to_pandas()
    per_hour = 3600 // SPEC.interval_s
    df["hour"] = df["ts"].dt.floor("h")
    nh = df.groupby(["pool", "node_id", "hour"]).size()
    assert (nh == per_hour).all()  # a node-hour is either complete or entirely missing
    node_hours = sum(SPEC.nodes_per_pool) * SPEC.hours
    missing = node_hours - len(nh)
    assert len(df) == (node_hours - missing) * per_hour
    gaps = SPEC.pool_gap_hours * sum(SPEC.nodes_per_pool)
    assert missing >= gaps
    assert (missing - gaps) / node_hours == pytest.approx(SPEC.outage_rate, abs=0.02)
    # each pool has exactly one silent gap of pool_gap_hours
    all_hours = pd.date_range(SPEC.start, periods=SPEC.hours, freq="h", tz="UTC")
    for pool, g in df.groupby("pool"):
        silent = all_hours.difference(pd.DatetimeIndex(g["hour"].unique()))
        assert len(silent) == SPEC.pool_gap_hours, pool
        assert (silent[-1] - silent[0]) == pd.Timedelta(hours=SPEC.pool_gap_hours - 1)


def test_telemetry_follows_hourly_truth_node_zero_first():
    clean = replace(SPEC, outage_rate=0.0, pool_gap_hours=0)
    df = _telemetry(clean).to_pandas()
    df["ds"] = df["ts"].dt.floor("h")
    df["node"] = df["node_id"].str[-3:].astype(int)
    truth = generate_pool_busy(clean).rename(columns={"unique_id": "pool"})
    # every sample of a node-hour repeats the hourly allocation
    assert (df.groupby(["node_id", "ds"])["gpus_allocated"].nunique() == 1).all()
    hourly = df[df["ts"] == df["ds"]].merge(truth, on=["pool", "ds"])
    G = clean.gpus_per_node
    expected = np.clip(hourly["busy_gpus"] - G * hourly["node"], 0, G)
    assert (hourly["gpus_allocated"] == expected).all()
    summed = hourly.groupby(["pool", "ds"])["gpus_allocated"].sum().rename("s").reset_index().merge(truth)
    assert (summed["s"] == summed["busy_gpus"]).all()


def test_calendar_contract():
    cal = generate_calendar(LONG)
    assert list(cal.columns) == ["run_id", "pool", "start", "end", "gpus", "priority", "status", "known_at"]
    for c in ("start", "end", "known_at"):
        assert str(cal[c].dt.tz) == "UTC"
    cap = dict(zip(pool_names(LONG), [16 * 8] * 4))
    assert (cal["end"] > cal["start"]).all()
    assert (cal["gpus"] > 0).all()
    assert (cal["gpus"] <= cal["pool"].map(cap)).all()
    assert (cal["gpus"] % LONG.gpus_per_node == 0).all()
    assert cal["priority"].between(1, 3).all()
    assert set(cal["status"]) == {"planned", "cancelled"}
    assert not cal.duplicated(["run_id", "known_at"]).any()
    assert all(r.startswith(f"run-{p}-") for r, p in zip(cal["run_id"], cal["pool"]))
    newest = cal.sort_values("known_at").groupby("run_id").tail(1)
    assert (newest["known_at"] <= newest["start"]).all()
    # a cancellation is always the newest version
    assert (cal[cal["status"] == "cancelled"]["run_id"].isin(newest[newest["status"] == "cancelled"]["run_id"])).all()
    # some runs were re-planned (several versions), some cancelled, some start before the window
    versions = cal.groupby("run_id").size()
    assert 0.1 < (versions > 1).mean() < 0.6
    assert (newest["status"] == "cancelled").any()
    assert (cal["start"] < LONG.start).any()
    # the calendar reaches past the telemetry window, for forecasts made at its end
    assert cal["start"].max() > LONG.start + pd.Timedelta(days=LONG.days)


def test_cancelled_runs_produce_no_busy_gpus():
    cal = generate_calendar(LONG)
    cancelled = cal[cal["status"] == "cancelled"]
    assert len(cancelled) > 0
    truth = generate_pool_busy(LONG, cal)
    # had they not been cancelled, exactly their GPUs would be busy (up to capacity)
    uncancelled = generate_pool_busy(LONG, cal[cal["status"] != "cancelled"])
    extra = uncancelled["busy_gpus"] - truth["busy_gpus"]
    assert (extra >= 0).all() and extra.sum() > 0
    in_cancelled = np.zeros(len(truth), dtype=bool)
    for run in cancelled.itertuples():
        on = (truth["unique_id"] == run.pool) & (truth["ds"] >= run.start) & (truth["ds"] < run.end)
        in_cancelled |= on.to_numpy()
        unclipped = on & (uncancelled["busy_gpus"] < uncancelled["gpus_total"]) & (truth["busy_gpus"] > 0)
        assert (extra[unclipped] == run.gpus).all()
    assert (extra[~in_cancelled] == 0).all()


def test_planned_runs_drive_busy_gpus():
    cal = generate_calendar(LONG)
    truth = generate_pool_busy(LONG, cal)
    planned = _planned(LONG, cal)
    assert (truth["busy_gpus"].between(0, truth["gpus_total"])).all()
    for pool in pool_names(LONG):
        on = truth["unique_id"] == pool
        corr = np.corrcoef(truth.loc[on, "busy_gpus"], planned.loc[on, "planned"])[0, 1]
        assert corr > 0.8, (pool, corr)
    # without runs, a pool is mostly idle: the background alone stays small
    quiet = planned["planned"] == 0
    assert (truth.loc[quiet, "busy_gpus"] / truth.loc[quiet, "gpus_total"]).mean() < 0.15


@pytest.mark.parametrize("file_per", ["day", "single", "node-day"])
def test_write_fleet(tmp_path, file_per):
    spec = replace(SPEC, days=2)
    files = write_fleet(spec, tmp_path, file_per=file_per)
    assert all(p.is_relative_to(tmp_path / "telemetry") for p in files.telemetry)
    tables = [pq.read_table(p) for p in files.telemetry]
    assert all(t.schema.equals(TELEMETRY_SCHEMA) for t in tables)
    assert sum(t.num_rows for t in tables) == files.rows == _telemetry(spec).num_rows
    if file_per == "day":
        assert [p.name for p in files.telemetry] == ["2026-01-05.parquet", "2026-01-06.parquet"]
    elif file_per == "single":
        assert len(files.telemetry) == 1
    else:
        assert all(t.column("node_id").unique().to_pylist() == [p.parent.name + "/" + p.stem] for t, p in zip(tables, files.telemetry))

    fleet = pd.read_csv(files.fleet)
    assert list(fleet.columns) == ["pool", "gpu_model", "nodes", "gpus_per_node"]
    assert fleet["nodes"].tolist() == [4, 5, 6]
    cal = pd.read_csv(files.calendar)
    for c in ("start", "end", "known_at"):
        cal[c] = pd.to_datetime(cal[c], utc=True)
    expected = generate_calendar(spec)
    assert (cal["start"] == expected["start"]).all() and (cal["known_at"] == expected["known_at"]).all()
    assert cal["run_id"].tolist() == expected["run_id"].tolist()

    # same spec again: byte-identical files; files of another layout are removed
    before = {p: p.read_bytes() for p in files.telemetry}
    again = write_fleet(spec, tmp_path, file_per=file_per)
    assert {p: p.read_bytes() for p in again.telemetry} == before
    other = "single" if file_per != "single" else "day"
    third = write_fleet(spec, tmp_path, file_per=other)
    assert sorted((tmp_path / "telemetry").rglob("*.parquet")) == sorted(third.telemetry)
