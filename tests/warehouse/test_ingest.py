"""Ingest into a real DuckDB file: every class of bad input, idempotency, late data, balance."""
from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse.ingest import REASONS, IngestRules, expand_paths, ingest_file, ingest_files

HEADER = "ts,node_id,pool,gpu_model,gpus_total,gpus_allocated,gpu_util,source"
GOOD = "2026-01-01T00:00:00Z,n1,p1,H100,8,3,50.0,dcgm"
NOW = datetime(2026, 2, 1, tzinfo=timezone.utc)
RULES = IngestRules(now=NOW)


def write_csv(path: Path, *lines: str, header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def canonical_frame(n_nodes: int = 2, minutes: int = 120, pool: str = "p1", start: str = "2026-01-01") -> pd.DataFrame:
    ts = pd.date_range(start, periods=minutes, freq="min", tz="UTC")
    rows = []
    for i in range(n_nodes):
        rows.append(pd.DataFrame({
            "ts": ts, "node_id": f"{pool}/n{i}", "pool": pool, "gpu_model": "H100", "gpus_total": 8,
            "gpus_allocated": [(m + i) % 9 for m in range(minutes)], "gpu_util": 50.0, "source": "dcgm",
        }))
    return pd.concat(rows, ignore_index=True)


def count(con, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def quarantined(con) -> list[tuple]:
    return con.execute("SELECT row_number, reason, detail, raw FROM quarantine ORDER BY row_number").fetchall()


# --- one malformed row per case: it must end in quarantine with this reason, the good row loads ---

FUTURE = (NOW + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
BAD_ROWS = {
    "missing_ts": ",n1,p1,H100,8,3,50.0,dcgm",
    "unparseable_ts": "yesterday at noon,n1,p1,H100,8,3,50.0,dcgm",
    "ts_no_timezone": "2026-01-01 00:01:00,n1,p1,H100,8,3,50.0,dcgm",
    "ts_in_future": f"{FUTURE},n1,p1,H100,8,3,50.0,dcgm",
    "ts_too_old": "1999-12-31T23:59:00Z,n1,p1,H100,8,3,50.0,dcgm",
    "missing_node_id": "2026-01-01T00:01:00Z,,p1,H100,8,3,50.0,dcgm",
    "missing_pool": "2026-01-01T00:01:00Z,n1,,H100,8,3,50.0,dcgm",
    "missing_gpu_model": "2026-01-01T00:01:00Z,n1,p1,,8,3,50.0,dcgm",
    "missing_gpus_total": "2026-01-01T00:01:00Z,n1,p1,H100,,3,50.0,dcgm",
    "bad_gpus_total": "2026-01-01T00:01:00Z,n1,p1,H100,eight,3,50.0,dcgm",
    "gpus_total_not_positive": "2026-01-01T00:01:00Z,n1,p1,H100,0,0,50.0,dcgm",
    "bad_gpus_allocated": "2026-01-01T00:01:00Z,n1,p1,H100,8,3.5,50.0,dcgm",
    "gpus_allocated_out_of_range": "2026-01-01T00:01:00Z,n1,p1,H100,8,9,50.0,dcgm",
    "bad_gpu_util": "2026-01-01T00:01:00Z,n1,p1,H100,8,3,high,dcgm",
    "gpu_util_not_finite": "2026-01-01T00:01:00Z,n1,p1,H100,8,3,nan,dcgm",
    "gpu_util_out_of_range": "2026-01-01T00:01:00Z,n1,p1,H100,8,3,140,dcgm",
    "no_measurement": "2026-01-01T00:01:00Z,n1,p1,H100,8,,,dcgm",
    "malformed_csv_line": "2026-01-01T00:01:00Z,n1,p1,H100,8,3,50.0,dcgm,surplus,fields",
}


@pytest.mark.parametrize("reason", sorted(BAD_ROWS))
def test_each_malformed_row_is_quarantined_with_its_reason(con, tmp_path: Path, reason: str) -> None:
    f = write_csv(tmp_path / "t.csv", GOOD, BAD_ROWS[reason])
    r = ingest_file(con, f, rules=RULES)
    assert r.status == "loaded", r.error
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined, r.rows_duplicate) == (2, 1, 1, 0)
    assert r.reasons == {reason: 1}
    [(row_number, got_reason, detail, raw)] = quarantined(con)
    assert got_reason == reason and reason in REASONS
    assert row_number == 3  # line 3 of the file (header is line 1)
    assert detail  # says which value was wrong
    assert BAD_ROWS[reason].split(",")[0] in raw or reason == "missing_ts"
    assert count(con, "telemetry") == 1


def test_negative_allocation_is_out_of_range(con, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "t.csv", GOOD, "2026-01-01T00:01:00Z,n1,p1,H100,8,-1,50.0,dcgm")
    assert ingest_file(con, f, rules=RULES).reasons == {"gpus_allocated_out_of_range": 1}


def test_fractional_gpus_total_is_bad(con, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "t.csv", GOOD, "2026-01-01T00:01:00Z,n1,p1,H100,8.5,3,50.0,dcgm")
    assert ingest_file(con, f, rules=RULES).reasons == {"bad_gpus_total": 1}


def test_node_moving_pool_and_pool_changing_gpu_model_are_quarantined(con, tmp_path: Path) -> None:
    ingest_file(con, write_csv(tmp_path / "a.csv", GOOD), rules=RULES)
    f = write_csv(
        tmp_path / "b.csv",
        "2026-01-01T00:01:00Z,n1,p2,H100,8,3,50.0,dcgm",  # n1 is registered in p1
        "2026-01-01T00:01:00Z,n2,p1,A100,8,3,50.0,dcgm",  # p1 holds H100
        "2026-01-01T00:01:00Z,n3,p1,H100,8,3,50.0,dcgm",  # fine
    )
    r = ingest_file(con, f, rules=RULES)
    assert r.reasons == {"node_pool_mismatch": 1, "pool_gpu_model_mismatch": 1}
    assert r.rows_loaded == 1
    details = {reason: detail for _, reason, detail, _ in quarantined(con)}
    assert details["node_pool_mismatch"] == "node n1 belongs to pool p1, row says p2"
    assert details["pool_gpu_model_mismatch"] == "pool p1 holds H100 GPUs, row says A100"


def test_inconsistent_node_within_one_new_file_keeps_the_majority(con, tmp_path: Path) -> None:
    f = write_csv(
        tmp_path / "t.csv",
        "2026-01-01T00:00:00Z,n9,p1,H100,8,3,50.0,dcgm",
        "2026-01-01T00:01:00Z,n9,p1,H100,8,3,50.0,dcgm",
        "2026-01-01T00:02:00Z,n9,p7,H100,8,3,50.0,dcgm",
    )
    r = ingest_file(con, f, rules=RULES)
    assert r.reasons == {"node_pool_mismatch": 1} and r.rows_loaded == 2


def test_unknown_node_and_pool_in_strict_mode(con, tmp_path: Path) -> None:
    ingest_file(con, write_csv(tmp_path / "a.csv", GOOD), rules=RULES)
    strict = IngestRules(now=NOW, register_new_nodes=False, register_new_pools=False)
    f = write_csv(
        tmp_path / "b.csv",
        "2026-01-01T00:01:00Z,n1,p1,H100,8,3,50.0,dcgm",
        "2026-01-01T00:01:00Z,n2,p1,H100,8,3,50.0,dcgm",
        "2026-01-01T00:01:00Z,n1,p1,H100,8,3,50.0,dcgm",
    )
    r = ingest_file(con, f, rules=strict)
    assert r.reasons == {"unknown_node": 1}
    assert r.rows_duplicate == 1 and r.rows_loaded == 1
    g = write_csv(tmp_path / "c.csv", "2026-01-01T00:01:00Z,x1,newpool,H100,8,3,50.0,dcgm")
    assert ingest_file(con, g, rules=strict).reasons == {"unknown_node": 1}  # the node check comes first
    pools_only = IngestRules(now=NOW, register_new_pools=False)
    assert ingest_file(con, g, rules=pools_only, force=True).reasons == {"unknown_pool": 1}


def test_duplicates_within_a_file(con, tmp_path: Path) -> None:
    f = write_csv(
        tmp_path / "t.csv",
        GOOD,
        GOOD,  # exact duplicate: skipped, counted
        "2026-01-01T00:01:00Z,n1,p1,H100,8,3,50.0,dcgm",
        "2026-01-01T00:01:00Z,n1,p1,H100,8,4,50.0,dcgm",  # same node+ts, other value: both quarantined
    )
    r = ingest_file(con, f, rules=RULES)
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined, r.rows_duplicate) == (4, 1, 2, 1)
    assert r.reasons == {"conflicting_duplicate_in_file": 2}


# --- file-level errors: a clear message in the log, and the other files still load ----------------


def _file_errors(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet at all")
    no_col = write_csv(tmp_path / "nocol.csv", "2026-01-01T00:00:00Z,n1,p1,8", header="ts,node_id,pool,gpus_total")
    trunc = tmp_path / "trunc.csv.gz"
    trunc.write_bytes(gzip.compress(((HEADER + "\n") + (GOOD + "\n") * 500).encode())[:60])
    odd = tmp_path / "data.xlsx"
    odd.write_text("not a spreadsheet")
    return {
        "missing": (tmp_path / "nope.parquet", "does not exist"),
        "corrupt": (corrupt, "cannot read file"),
        "no_column": (no_col, "missing required column(s) gpu_model"),
        "truncated_gzip": (trunc, "cannot read file"),
        "unsupported": (odd, "unsupported file type"),
    }


def test_unreadable_files_fail_clearly_and_stop_nothing_else(con, tmp_path: Path) -> None:
    errors = _file_errors(tmp_path)
    good = write_csv(tmp_path / "good.csv", GOOD)
    paths = [p for p, _ in errors.values()] + [good]
    results = ingest_files(con, paths, rules=RULES)
    by_path = {r.path: r for r in results}
    for name, (path, message) in errors.items():
        r = by_path[str(path)]
        assert r.status == "failed", name
        assert message in r.error, (name, r.error)
        assert str(path.name) in r.error
    assert by_path[str(good)].status == "loaded" and count(con, "telemetry") == 1
    log = con.execute("SELECT status, count(*) FROM ingest_log GROUP BY status ORDER BY status").fetchall()
    assert log == [("failed", 5), ("loaded", 1)]


def test_naive_parquet_timestamps_are_quarantined_not_guessed(con, tmp_path: Path) -> None:
    df = canonical_frame(1, 3)
    df["ts"] = df["ts"].dt.tz_localize(None)
    df.to_parquet(tmp_path / "naive.parquet")
    r = ingest_file(con, tmp_path / "naive.parquet", rules=RULES)
    assert r.reasons == {"ts_no_timezone": 3} and r.rows_loaded == 0


def test_parquet_with_wrong_types_and_optional_columns_absent(con, tmp_path: Path) -> None:
    table = pa.table({
        "ts": pa.array([datetime(2026, 1, 1, tzinfo=timezone.utc)] * 2, pa.timestamp("us", tz="UTC")),
        "node_id": ["n1", "n2"], "pool": ["p1", "p1"], "gpu_model": ["H100", "H100"],
        "gpus_total": ["8", "x"],  # strings where ints belong
        "gpu_util": [12.5, 3.0],
    })
    pq.write_table(table, tmp_path / "typed.parquet")
    r = ingest_file(con, tmp_path / "typed.parquet", rules=RULES)
    assert r.reasons == {"bad_gpus_total": 1} and r.rows_loaded == 1
    row = con.execute("SELECT gpus_total, gpus_allocated, gpu_util, source FROM telemetry").fetchall()
    assert row == [(8, None, 12.5, "canonical")]  # source defaults to the adapter name


# --- idempotency and late data ---------------------------------------------------------------------


def test_same_file_twice_adds_nothing(con, tmp_path: Path) -> None:
    canonical_frame().to_parquet(tmp_path / "a.parquet")
    first = ingest_file(con, tmp_path / "a.parquet", rules=RULES)
    snapshot = con.execute("SELECT * FROM telemetry ORDER BY node_id, ts").fetchall()
    second = ingest_file(con, tmp_path / "a.parquet", rules=RULES)
    forced = ingest_file(con, tmp_path / "a.parquet", rules=RULES, force=True)
    assert first.rows_loaded == 240
    assert second.status == "skipped_same_file" and second.rows_duplicate == 240 and second.rows_loaded == 0
    assert forced.status == "loaded" and forced.rows_duplicate == 240 and forced.rows_loaded == 0
    assert con.execute("SELECT * FROM telemetry ORDER BY node_id, ts").fetchall() == snapshot
    assert count(con, "quarantine") == 0


def test_overlapping_file_loads_only_new_rows(con, tmp_path: Path) -> None:
    df = canonical_frame(minutes=120)
    df[df.ts < "2026-01-01 01:00"].to_parquet(tmp_path / "a.parquet")
    df.to_parquet(tmp_path / "b.parquet")  # first hour again, plus the second hour
    ingest_file(con, tmp_path / "a.parquet", rules=RULES)
    r = ingest_file(con, tmp_path / "b.parquet", rules=RULES)
    assert (r.rows_loaded, r.rows_duplicate, r.rows_replaced) == (120, 120, 0)
    assert count(con, "telemetry") == 240
    dupes = con.execute("SELECT count(*) FROM (SELECT node_id, ts FROM telemetry GROUP BY ALL HAVING count(*) > 1)")
    assert dupes.fetchall()[0][0] == 0


def test_corrected_redelivery_replaces_the_node_hour_and_keeps_the_old_samples(con, tmp_path: Path) -> None:
    df = canonical_frame(minutes=120)
    df.to_parquet(tmp_path / "a.parquet")
    ingest_file(con, tmp_path / "a.parquet", rules=RULES)
    hour = df[(df.node_id == "p1/n0") & (df.ts < "2026-01-01 01:00")].copy()
    hour.loc[hour.index[:30], "gpus_allocated"] = 8  # corrected counts for half the hour
    hour.to_parquet(tmp_path / "fix.parquet")
    r = ingest_file(con, tmp_path / "fix.parquet", rules=RULES)
    assert r.status == "loaded"
    assert (r.rows_in, r.rows_loaded, r.rows_duplicate) == (60, 60, 0)
    assert (r.rows_replaced, r.node_hours_replaced) == (60, 1)
    assert "replaced 60 stored samples in 1 node-hour" in r.note
    assert count(con, "telemetry") == 240 and count(con, "telemetry_superseded") == 60
    got = con.execute(
        "SELECT sum(gpus_allocated) FROM telemetry WHERE node_id = 'p1/n0' AND ts < TIMESTAMPTZ '2026-01-01 01:00:00+00'"
    ).fetchall()[0][0]
    assert got == int(hour.gpus_allocated.sum())
    log_note = con.execute("SELECT note FROM ingest_log WHERE ingest_id = ?", [r.ingest_id]).fetchall()[0][0]
    assert log_note == r.note


def test_rows_in_always_balance_on_a_messy_file(con, tmp_path: Path) -> None:
    lines = [GOOD, GOOD] + list(BAD_ROWS.values()) + ["2026-01-01T00:05:00Z,n2,p1,H100,8,1,10,dcgm"]
    r = ingest_file(con, write_csv(tmp_path / "messy.csv", *lines), rules=RULES)
    assert r.balanced and r.rows_in == len(lines)
    assert count(con, "telemetry") + count(con, "quarantine") + r.rows_duplicate == r.rows_in
    raw = json.loads(con.execute("SELECT raw FROM quarantine WHERE reason = 'bad_gpu_util'").fetchall()[0][0])
    assert raw["gpu_util"] == "high" and raw["node_id"] == "n1"


def test_thousands_of_files_by_glob_and_directory(con, tmp_path: Path) -> None:
    d = tmp_path / "drop"
    d.mkdir()
    for i in range(60):
        ts = (datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        write_csv(d / f"part-{i:04d}.csv", f"{ts},n1,p1,H100,8,{i % 9},50.0,dcgm")
    (d / "README.txt").write_text("not telemetry")
    files = expand_paths([str(d / "part-*.csv")])
    assert len(files) == 60 and expand_paths([d]) == files
    results = ingest_files(con, files, rules=RULES)
    assert {r.status for r in results} == {"loaded"} and count(con, "telemetry") == 60
    with pytest.raises(FileNotFoundError, match="matches no file"):
        expand_paths([str(d / "nothing-*.csv")])


def test_inventory_tracks_nodes_pools_and_sampling_interval(con, tmp_path: Path) -> None:
    canonical_frame(n_nodes=3, minutes=90).to_parquet(tmp_path / "a.parquet")
    ingest_file(con, tmp_path / "a.parquet", rules=RULES)
    nodes = con.execute("SELECT node_id, pool, gpus_total, sample_interval_s FROM nodes ORDER BY node_id").fetchall()
    assert nodes == [(f"p1/n{i}", "p1", 8, 60) for i in range(3)]
    assert con.execute("SELECT pool, gpu_model FROM pools").fetchall() == [("p1", "H100")]


# --- files bigger than one DuckDB row group (122,880 rows) ----------------------------------------


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> tuple[Path, int]:
    from warehouse.synthetic import FleetSpec, write_fleet

    d = tmp_path_factory.mktemp("big")
    fleet = write_fleet(FleetSpec(pools=2, nodes_per_pool=10, days=7, interval_s=60, seed=2), d, file_per="single")
    assert fleet.rows > 150_000
    return fleet.telemetry[0], fleet.rows


def test_big_file_forced_reingest_is_all_duplicates(con, big_file) -> None:
    """Regression: exclusions must stay visible past one row group (a DuckDB 2.0.0 pitfall)."""
    path, rows = big_file
    ingest_file(con, path, rules=RULES)
    again = ingest_file(con, path, rules=RULES, force=True)
    assert (again.rows_in, again.rows_loaded, again.rows_duplicate) == (rows, 0, rows)
    assert count(con, "telemetry") == rows


def test_big_file_with_every_row_twice(con, big_file, tmp_path: Path) -> None:
    path, rows = big_file
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table]), tmp_path / "twice.parquet")
    r = ingest_file(con, tmp_path / "twice.parquet", rules=RULES)
    assert (r.rows_in, r.rows_loaded, r.rows_duplicate, r.rows_quarantined) == (2 * rows, rows, rows, 0)
    assert count(con, "telemetry") == rows


def test_big_file_claiming_another_pool_is_quarantined_whole(con, big_file, tmp_path: Path) -> None:
    path, rows = big_file
    ingest_file(con, path, rules=RULES)
    moved = pq.read_table(path).to_pandas()
    moved["pool"] = "elsewhere"
    moved.to_parquet(tmp_path / "moved.parquet")
    r = ingest_file(con, tmp_path / "moved.parquet", rules=RULES)
    assert r.reasons == {"node_pool_mismatch": rows} and r.rows_loaded == 0
    assert count(con, "telemetry_superseded") == 0 and count(con, "telemetry") == rows
    assert con.execute("SELECT count(*) FROM pools WHERE pool = 'elsewhere'").fetchall() == [(0,)]
