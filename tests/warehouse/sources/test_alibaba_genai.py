"""Alibaba GenAI duty-cycle adapter: the real sample plus synthetic edge cases."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from warehouse.sources.alibaba_genai import translate
from warehouse.sources.base import STAGED_SCHEMA, SourceOptions, SourceReadError

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real" / "alibaba_genai"
needs_real = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real Alibaba GenAI trace not present at {REAL} (development checkouts only)"
)
DUTY = REAL / "pod_gpu_duty_cycle_anon.csv.gz"
HEADER = "value,timestamp_anon,container_ip\n"


def write(tmp_path: Path, body: str, name: str = "pod_gpu_duty_cycle_anon.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + body)
    return path


# --- real data -------------------------------------------------------------------------------


@needs_real
def test_real_sample_passes_values_through() -> None:
    raw = pd.read_csv(DUTY, dtype={"container_ip": str})
    out = translate(DUTY, SourceOptions())
    df = out.table.to_pandas()
    assert out.table.schema == STAGED_SCHEMA
    assert out.rejects == [] and out.interval_s == 60
    assert len(df) == len(raw) == 94616
    assert df["row_number"].tolist() == list(range(1, len(raw) + 1))
    np.testing.assert_array_equal(df["gpu_util"].to_numpy(), raw["value"].to_numpy())
    assert df["node_id"].tolist() == raw["container_ip"].tolist()
    assert df["node_id"].nunique() == 123
    expected_ts = pd.to_datetime(raw["timestamp_anon"], unit="s", utc=True)
    assert (df["ts"] == expected_ts).all() and str(df["ts"].dt.tz) == "UTC"
    assert df["ts"].iloc[0] == pd.Timestamp("2022-09-11 01:12", tz="UTC")
    assert df["gpus_allocated"].isna().all() and set(df["gpus_total"]) == {1}
    assert set(df["pool"]) == {"alibaba-genai"} and set(df["source"]) == {"alibaba-genai"}


@needs_real
def test_real_stamps_are_scaled_minutes() -> None:
    """Documents a quirk of the public sample: stamps are 0.95 x real unix minutes (57 s apart)."""
    df = translate(DUTY, SourceOptions()).table.to_pandas()
    seconds = df["ts"].astype("int64") // 10**6
    assert (seconds % 57 == 0).all()
    steps = df.sort_values(["node_id", "ts"]).groupby("node_id")["ts"].diff().dropna()
    assert steps.mode().iloc[0] == pd.Timedelta(seconds=57)


# --- synthetic edge cases --------------------------------------------------------------------


def test_out_of_range_and_bad_values_pass_through_or_null(tmp_path: Path) -> None:
    body = (
        "150.0,1662858720.0,aaa\n"  # out of range: passed through, validation quarantines it
        "-3,1662858777,bbb\n"
        "n/a,1662858834,ccc\n"  # not a number: null util, row kept
        "12.5,soon,ddd\n"  # not a timestamp: null ts, row kept
        "7.25,1662858891.5,\n"  # no container: null node_id, row kept
    )
    out = translate(write(tmp_path, body), SourceOptions(genai_gpus_per_container=8, genai_pool="gen"))
    df = out.table.to_pandas()
    assert out.rejects == [] and len(df) == 5
    assert df["gpu_util"].tolist()[:2] == [150.0, -3.0] and pd.isna(df["gpu_util"][2])
    assert pd.isna(df["ts"][3]) and pd.isna(df["node_id"][4])
    assert df["ts"][4] == pd.Timestamp(1662858891.5, unit="s", tz="UTC")
    assert set(df["gpus_total"]) == {8} and set(df["pool"]) == {"gen"}


def test_malformed_line_is_rejected_not_dropped(tmp_path: Path) -> None:
    out = translate(write(tmp_path, "1,1662858720,aaa\n2,1662858720\n3,1662858720,ccc\n"), SourceOptions())
    assert out.table.column("row_number").to_pylist() == [1, 3]
    assert [(r[0], r[1], r[3]) for r in out.rejects] == [(2, "malformed_csv_line", "2,1662858720")]


def test_missing_column_raises(tmp_path: Path) -> None:
    path = tmp_path / "pod_gpu_duty_cycle_anon.csv"
    path.write_text("value,timestamp_anon\n1,1662858720\n")
    with pytest.raises(SourceReadError, match="container_ip"):
        translate(path, SourceOptions())


def test_truncated_gzip_raises(tmp_path: Path) -> None:
    blob = gzip.compress((HEADER + "1.0,1662858720.0,aaa\n" * 4000).encode())
    path = tmp_path / "pod_gpu_duty_cycle_anon.csv.gz"
    path.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(SourceReadError, match="pod_gpu_duty_cycle_anon.csv.gz"):
        translate(path, SourceOptions())


def test_not_gzip_and_missing_file_raise(tmp_path: Path) -> None:
    path = tmp_path / "pod_gpu_duty_cycle_anon.csv.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(SourceReadError):
        translate(path, SourceOptions())
    with pytest.raises(SourceReadError, match="does not exist"):
        translate(tmp_path / "nope.csv", SourceOptions())
