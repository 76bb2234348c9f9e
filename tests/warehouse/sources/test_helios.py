"""Helios Earth adapter: real VC files from the development slice plus synthetic edge cases."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from warehouse.sources.base import STAGED_SCHEMA, SourceOptions, SourceReadError
from warehouse.sources.helios import translate

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real" / "helios_earth"
needs_real = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real Helios traces not present at {REAL} (development checkouts only)"
)
VC_FILES = sorted(REAL.glob("*_cluster_sequence_vc.csv.gz")) if REAL.is_dir() else []
HEADER = "time,total_gpu_num,running_gpu_num,idle_gpu_num,gpu_utilization\n"


def data_rows(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return sum(1 for line in f if line.strip()) - 1


def write(tmp_path: Path, body: str, name: str = "vcTest_cluster_sequence_vc.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + body)
    return path


# --- real data -------------------------------------------------------------------------------


@needs_real
def test_real_files_all_translate_with_every_row() -> None:
    assert len(VC_FILES) == 16
    for path in VC_FILES:
        out = translate(path, SourceOptions())
        vc = path.name.split("_cluster_sequence_vc")[0]
        assert out.table.schema == STAGED_SCHEMA
        assert out.table.num_rows == data_rows(path) == 27360
        assert out.rejects == []
        assert out.interval_s == 60
        df = out.table.to_pandas()
        assert set(df["pool"]) == {vc} and set(df["node_id"]) == {f"helios-earth/{vc}"}
        assert (df["gpus_allocated"] <= df["gpus_total"]).all()
        assert df[["ts", "gpus_total", "gpus_allocated"]].notna().all().all()


@needs_real
def test_real_vc3sl_timestamps_and_fields() -> None:
    out = translate(REAL / "vc3sl_cluster_sequence_vc.csv.gz", SourceOptions())
    df = out.table.to_pandas()
    assert str(df["ts"].dt.tz) == "UTC"
    assert df["ts"].iloc[0] == pd.Timestamp("2020-04-30 16:00", tz="UTC")  # 2020-05-01 00:00 local
    assert df["ts"].iloc[-1] == pd.Timestamp("2020-05-19 15:59", tz="UTC")
    assert df["ts"].diff().dropna().eq(pd.Timedelta(minutes=1)).all()
    assert df["row_number"].tolist() == list(range(1, len(df) + 1))
    assert set(df["gpus_total"]) == {64}
    assert df["gpu_util"].isna().all()  # Helios gpu_utilization is an allocation ratio
    assert set(df["gpu_model"]) == {"V100"} and set(df["source"]) == {"helios"}
    first = df.iloc[0]
    assert (first["gpus_total"], first["gpus_allocated"]) == (64, 59)


@needs_real
def test_real_blackouts_flagged_only_in_known_windows() -> None:
    for path in VC_FILES:
        df = translate(path, SourceOptions()).table.to_pandas()
        local = df["ts"].dt.tz_convert(None) + pd.Timedelta(hours=8)
        flagged = df["quality_flag"].eq("helios_blackout")
        on_0510 = local.dt.strftime("%Y-%m-%d").eq("2020-05-10")
        hour_0512 = local.dt.strftime("%Y-%m-%d %H").eq("2020-05-12 15")
        assert flagged.equals(on_0510 | hour_0512), path.name
        assert int(flagged.sum()) == 1440 + 60
        assert df["quality_flag"][~flagged].isna().all()
        assert (df.loc[on_0510, "gpus_allocated"] == 0).all()  # the log gap looks like an idle VC


@needs_real
def test_real_plain_csv_reads_the_same_as_gzip(tmp_path: Path) -> None:
    src = REAL / "vcJkd_cluster_sequence_vc.csv.gz"
    plain = tmp_path / "vcJkd_cluster_sequence_vc.csv"
    with gzip.open(src, "rb") as f, plain.open("wb") as g:
        shutil.copyfileobj(f, g)
    assert translate(plain, SourceOptions()).table.equals(translate(src, SourceOptions()).table)


# --- synthetic edge cases --------------------------------------------------------------------


def test_offset_and_blackout_options(tmp_path: Path) -> None:
    path = write(tmp_path, "2021-01-01 00:00:00,8,2,6,0.25\n2021-01-01 01:00:00,8,3,5,0.375\n")
    opts = SourceOptions(
        helios_utc_offset_hours=5.5,
        helios_gpu_model="A100",
        helios_blackouts=(("2021-01-01 01:00:00", "2021-01-01 02:00:00"),),
    )
    df = translate(path, opts).table.to_pandas()
    assert df["ts"].tolist() == [pd.Timestamp("2020-12-31 18:30Z"), pd.Timestamp("2020-12-31 19:30Z")]
    assert df["quality_flag"].tolist()[1] == "helios_blackout" and pd.isna(df["quality_flag"][0])
    assert df["pool"].tolist() == ["vcTest", "vcTest"] and set(df["gpu_model"]) == {"A100"}


def test_bad_value_nulls_the_field_and_keeps_the_row(tmp_path: Path) -> None:
    path = write(
        tmp_path, "2020-05-01 00:00:00,8,2,6,0.25\n2020-05-01 00:01:00,8,two,6,0.25\nnot a time,8.5,1,6,0\n"
    )
    out = translate(path, SourceOptions())
    df = out.table.to_pandas()
    assert out.table.num_rows == 3 and out.rejects == []
    assert df["row_number"].tolist() == [1, 2, 3]
    assert pd.isna(df["gpus_allocated"][1]) and df["gpus_total"][1] == 8
    assert pd.isna(df["ts"][2]) and pd.isna(df["gpus_total"][2])  # 8.5 GPUs is not a count


def test_malformed_line_is_rejected_not_dropped(tmp_path: Path) -> None:
    body = "2020-05-01 00:00:00,8,2,6,0.25\n2020-05-01 00:01:00,8,2,6,0.25,extra\n2020-05-01 00:02:00,8,2,6,0.25\n"
    path = write(tmp_path, body)
    out = translate(path, SourceOptions())
    assert out.table.column("row_number").to_pylist() == [1, 3]
    assert [(r[0], r[1]) for r in out.rejects] == [(2, "malformed_csv_line")]
    assert out.rejects[0][3] == "2020-05-01 00:01:00,8,2,6,0.25,extra"
    assert out.table.num_rows + len(out.rejects) == data_rows(path)


def test_missing_column_raises(tmp_path: Path) -> None:
    path = tmp_path / "vcX_cluster_sequence_vc.csv"
    path.write_text("time,total_gpu_num\n2020-05-01 00:00:00,8\n")
    with pytest.raises(SourceReadError, match="running_gpu_num"):
        translate(path, SourceOptions())


def test_truncated_gzip_raises(tmp_path: Path) -> None:
    body = "".join(f"2020-05-01 00:{m:02d}:00,8,2,6,0.25\n" for m in range(60)) * 50
    blob = gzip.compress((HEADER + body).encode())
    path = tmp_path / "vcX_cluster_sequence_vc.csv.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(SourceReadError, match="vcX_cluster_sequence_vc.csv.gz"):
        translate(path, SourceOptions())


def test_gzip_input(tmp_path: Path) -> None:
    path = tmp_path / "vcZ_cluster_sequence_vc.csv.gz"
    path.write_bytes(gzip.compress((HEADER + "2020-05-01 00:00:00,8,2,6,0.25\n").encode()))
    table = translate(path, SourceOptions()).table
    assert table.schema == STAGED_SCHEMA and table.column("pool").to_pylist() == ["vcZ"]


def test_missing_file_empty_file_and_bad_name_raise(tmp_path: Path) -> None:
    with pytest.raises(SourceReadError, match="does not exist"):
        translate(tmp_path / "vcQ_cluster_sequence_vc.csv", SourceOptions())
    empty = tmp_path / "vcE_cluster_sequence_vc.csv"
    empty.write_text("")
    with pytest.raises(SourceReadError, match="empty"):
        translate(empty, SourceOptions())
    with pytest.raises(SourceReadError, match="VC name"):
        translate(write(tmp_path, "", name="cluster.csv"), SourceOptions())


def test_header_only_gives_empty_table(tmp_path: Path) -> None:
    out = translate(write(tmp_path, ""), SourceOptions())
    assert out.table.num_rows == 0 and out.table.schema == STAGED_SCHEMA
    assert isinstance(out.table, pa.Table)
