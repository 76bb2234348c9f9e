"""Philly adapter: the real node sequence (incl. the 2017 DST fall-back) plus synthetic edge cases."""
from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from warehouse.sources.base import STAGED_SCHEMA, SourceOptions, SourceReadError
from warehouse.sources.philly import translate

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real" / "philly"
needs_real = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real Philly trace not present at {REAL} (development checkouts only)"
)
SEQ = REAL / "philly_node_sequence.csv.gz"
OPTS = SourceOptions(philly_gpus_per_node=4.0)


def data_rows(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return sum(1 for line in f if line.strip()) - 1


def write(tmp_path: Path, times: list[str], name: str = "philly_node_sequence.csv") -> Path:
    path = tmp_path / name
    path.write_text("time,active,total\n" + "".join(f"{t},10,20\n" for t in times))
    return path


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# --- real data -------------------------------------------------------------------------------


@needs_real
def test_real_rows_all_kept_and_dst_fall_back_strictly_increasing() -> None:
    out = translate(SEQ, SourceOptions())
    df = out.table.to_pandas()
    assert out.table.schema == STAGED_SCHEMA
    assert out.rejects == []
    assert out.table.num_rows == data_rows(SEQ) == 62761
    assert out.interval_s == 60
    assert str(df["ts"].dt.tz) == "UTC"
    assert df["ts"].notna().all() and df["ts"].is_monotonic_increasing and df["ts"].is_unique
    assert df["ts"].iloc[0] == utc("2017-10-03 07:00")  # 00:00 PDT
    assert df["ts"].iloc[-1] == utc("2017-11-16 07:59")  # 23:59 PST
    # 2017-11-05: the file has 01:00-01:59 once; it is read as the first (daylight) occurrence.
    fall_back = df["ts"].between(utc("2017-11-05 07:59"), utc("2017-11-05 10:00"))
    assert df.loc[fall_back, "ts"].iloc[[0, 1, -2, -1]].tolist() == [
        utc("2017-11-05 07:59"),  # 00:59 PDT
        utc("2017-11-05 08:00"),  # 01:00 PDT
        utc("2017-11-05 08:59"),  # 01:59 PDT
        utc("2017-11-05 10:00"),  # 02:00 PST
    ]


@needs_real
def test_real_gpus_from_machine_list() -> None:
    df = translate(SEQ, SourceOptions()).table.to_pandas()
    # cluster_machine_list.csv: 321 machines x 2 GPUs + 231 x 8 = 2490 GPUs on 552 machines.
    assert set(df["gpus_total"]) == {round(420 * 2490 / 552), 2490, round(174 * 2490 / 552)}
    assert (df["gpus_allocated"] <= df["gpus_total"]).all()
    first = df.iloc[0]
    assert (first["gpus_allocated"], first["gpus_total"]) == (round(312 * 2490 / 552), 1895)
    assert set(df["node_id"]) == {"philly/cluster"} and set(df["pool"]) == {"philly"}
    assert set(df["source"]) == {"philly"} and df["gpu_util"].isna().all()


@needs_real
def test_real_gpus_per_node_option_wins(tmp_path: Path) -> None:
    alone = tmp_path / SEQ.name  # no machine list beside it
    alone.write_bytes(SEQ.read_bytes())
    df = translate(alone, SourceOptions(philly_gpus_per_node=8)).table.to_pandas()
    assert df["gpus_total"].iloc[0] == 3360 and df["gpus_allocated"].iloc[0] == 312 * 8


# --- synthetic edge cases --------------------------------------------------------------------


def test_full_repeated_hour_in_order_is_inferred(tmp_path: Path) -> None:
    times = ["2017-11-05 00:30:00", "2017-11-05 01:00:00", "2017-11-05 01:30:00",
             "2017-11-05 01:00:00", "2017-11-05 01:30:00", "2017-11-05 02:00:00"]
    out = translate(write(tmp_path, times), OPTS)
    assert out.rejects == []
    assert out.table.column("ts").to_pandas().tolist() == [
        utc("2017-11-05 07:30"), utc("2017-11-05 08:00"), utc("2017-11-05 08:30"),
        utc("2017-11-05 09:00"), utc("2017-11-05 09:30"), utc("2017-11-05 10:00"),
    ]


def test_stray_repeated_time_out_of_order_is_rejected(tmp_path: Path) -> None:
    times = ["2017-11-05 00:30:00", "2017-11-05 01:00:00", "2017-11-05 01:30:00",
             "2017-11-05 02:00:00", "2017-11-05 01:30:00", "2017-11-05 02:30:00"]
    path = write(tmp_path, times)
    out = translate(path, OPTS)
    assert [(r[0], r[1]) for r in out.rejects] == [(5, "ambiguous_local_time")]
    assert out.rejects[0][3] == "2017-11-05 01:30:00,10,20"
    assert "America/Los_Angeles" in out.rejects[0][2]
    assert out.table.column("row_number").to_pylist() == [1, 2, 3, 4, 6]
    assert out.table.num_rows + len(out.rejects) == data_rows(path)
    ts = out.table.column("ts").to_pandas()
    assert ts.is_monotonic_increasing and ts.is_unique


def test_third_occurrence_is_rejected(tmp_path: Path) -> None:
    times = ["2017-11-05 01:30:00", "2017-11-05 01:30:00", "2017-11-05 01:30:00", "2017-11-05 02:00:00"]
    out = translate(write(tmp_path, times), OPTS)
    assert [(r[0], r[1]) for r in out.rejects] == [(3, "ambiguous_local_time")]
    expected = [utc("2017-11-05 08:30"), utc("2017-11-05 09:30"), utc("2017-11-05 10:00")]
    assert out.table.column("ts").to_pandas().tolist() == expected


def test_spring_forward_shifts_forward(tmp_path: Path) -> None:
    times = ["2018-03-11 01:59:00", "2018-03-11 02:30:00", "2018-03-11 03:00:00"]
    out = translate(write(tmp_path, times), OPTS)
    assert out.rejects == []
    expected = [utc("2018-03-11 09:59"), utc("2018-03-11 10:00"), utc("2018-03-11 10:00")]  # 02:30 -> 03:00 PDT
    assert out.table.column("ts").to_pandas().tolist() == expected


def test_bad_value_nulls_the_field_and_keeps_the_row(tmp_path: Path) -> None:
    path = tmp_path / "philly_node_sequence.csv"
    path.write_text("time,active,total\n2017-10-03 00:00:00,x,420\n2017-10-03 00:01:00,300,\nyesterday,1,2\n")
    out = translate(path, OPTS)
    df = out.table.to_pandas()
    assert out.rejects == [] and len(df) == 3
    assert pd.isna(df["gpus_allocated"][0]) and df["gpus_total"][0] == 1680
    assert pd.isna(df["gpus_total"][1]) and df["gpus_allocated"][1] == 1200
    assert pd.isna(df["ts"][2])


def test_missing_column_raises(tmp_path: Path) -> None:
    path = tmp_path / "philly_node_sequence.csv"
    path.write_text("time,active\n2017-10-03 00:00:00,1\n")
    with pytest.raises(SourceReadError, match="total"):
        translate(path, OPTS)


def test_truncated_gzip_raises(tmp_path: Path) -> None:
    body = "time,active,total\n" + "2017-10-03 00:00:00,312,420\n" * 5000
    blob = gzip.compress(body.encode())
    path = tmp_path / "philly_node_sequence.csv.gz"
    path.write_bytes(blob[: len(blob) - 40])
    with pytest.raises(SourceReadError, match="philly_node_sequence.csv.gz"):
        translate(path, OPTS)


def test_gpus_per_node_needs_option_or_machine_list(tmp_path: Path) -> None:
    path = write(tmp_path, ["2017-10-03 00:00:00"])
    with pytest.raises(SourceReadError, match="philly_gpus_per_node"):
        translate(path, SourceOptions())
    machines = tmp_path / "cluster_machine_list.csv"
    machines.write_text("machineId, number of GPUs, single GPU mem\nm0,2, 12GB\nm1,8, 24GB\n")
    df = translate(path, SourceOptions()).table.to_pandas()
    assert (df["gpus_allocated"][0], df["gpus_total"][0]) == (50, 100)  # 5 GPUs per node
    machines.write_text("machineId, number of GPUs\nm0,2\nm1,eight\n")
    with pytest.raises(SourceReadError, match="machine list"):
        translate(path, SourceOptions())
