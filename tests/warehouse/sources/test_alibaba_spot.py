"""Alibaba spot-GPU adapter: the real hourly table with node_info capacities plus synthetic edge cases."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from warehouse.sources.alibaba_spot import translate
from warehouse.sources.base import STAGED_SCHEMA, SourceOptions, SourceReadError

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real" / "alibaba_spot_gpu"
needs_real = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real Alibaba spot trace not present at {REAL} (development checkouts only)"
)
HOURLY = REAL / "hourly_concurrency_top_models.csv"
NODE_INFO = "gpu_model,gpu_capacity_num,cpu_num,node_name\nA10,1,128,0\nA10,2,128,1\nH800,8,192,2\n"


def write(tmp_path: Path, body: str, node_info: str | None = NODE_INFO) -> Path:
    path = tmp_path / "hourly_concurrency_top_models.csv"
    path.write_text(body)
    if node_info is not None:
        (tmp_path / "node_info_df.csv").write_text(node_info)
    return path


# --- real data -------------------------------------------------------------------------------


@needs_real
def test_real_long_rows_capacity_and_clipping() -> None:
    raw = pd.read_csv(HOURLY)
    models = [c for c in raw.columns if c != "hour"]
    out = translate(HOURLY, SourceOptions())
    df = out.table.to_pandas()
    assert out.table.schema == STAGED_SCHEMA
    assert out.rejects == [] and out.interval_s == 3600
    assert len(raw) == 2640 and len(models) == 6
    assert len(df) == len(raw) * len(models)
    capacity = df.groupby("gpu_model")["gpus_total"].agg(["min", "max"])
    assert capacity.loc["A100-SXM4-80GB"].tolist() == [3456, 3456]
    assert capacity["max"].to_dict() == {
        "A10": 2494, "A100-SXM4-80GB": 3456, "A800-SXM4-80GB": 176,
        "GPU-series-1": 1558, "GPU-series-2": 976, "H800": 1752,
    }
    assert (df["gpus_allocated"] <= df["gpus_total"]).all() and df["gpus_allocated"].notna().all()
    a10_full = df.loc[df["gpu_model"] == "A10", "gpus_allocated"].eq(2494).mean()
    assert a10_full > 0.99  # A10 demand exceeds capacity in most hours
    # hour 0: A100 demand 2116.5 -> 2116 (half to even), below capacity.
    first = df[(df["row_number"] == 1) & (df["gpu_model"] == "A100-SXM4-80GB")].iloc[0]
    assert first["gpus_allocated"] == 2116 and first["ts"] == pd.Timestamp("2026-01-01", tz="UTC")
    assert first["pool"] == first["node_id"] == "alibaba-spot-A100-SXM4-80GB"
    assert df["ts"].max() == pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(hours=2639)
    assert df.groupby("row_number")["ts"].nunique().eq(1).all()
    assert df.groupby("row_number").size().eq(6).all()
    assert df["gpu_util"].isna().all() and set(df["source"]) == {"alibaba-spot"}


@needs_real
def test_real_node_info_option_and_start(tmp_path: Path) -> None:
    alone = tmp_path / HOURLY.name
    alone.write_bytes(HOURLY.read_bytes())
    with pytest.raises(SourceReadError, match="node_info_df.csv"):
        translate(alone, SourceOptions())
    opts = SourceOptions(
        spot_node_info=REAL / "node_info_df.csv", spot_start=datetime(2025, 3, 1, tzinfo=timezone.utc)
    )
    df = translate(alone, opts).table.to_pandas()
    assert df["ts"].min() == pd.Timestamp("2025-03-01", tz="UTC")


# --- synthetic edge cases --------------------------------------------------------------------


def test_unknown_capacity_goes_to_rejects(tmp_path: Path) -> None:
    path = write(tmp_path, "hour,A10,H900,H800\n0,2.5,7,9\n1,5,8,3.5\n")
    out = translate(path, SourceOptions(spot_pool_prefix="spot/"))
    df = out.table.to_pandas()
    assert [(r[0], r[1]) for r in out.rejects] == [(1, "unknown_gpu_capacity"), (2, "unknown_gpu_capacity")]
    assert "H900" in out.rejects[0][2] and out.rejects[0][3] == "0,2.5,7,9"
    assert len(df) + len(out.rejects) == 2 * 3  # cells in = rows out + rejects
    assert df["gpu_model"].tolist() == ["A10", "H800", "A10", "H800"]
    assert df["pool"].tolist() == ["spot/A10", "spot/H800"] * 2
    assert df["gpus_total"].tolist() == [3, 8, 3, 8]
    assert df["gpus_allocated"].tolist() == [2, 8, 3, 4]  # half to even; above capacity -> capacity


def test_unreadable_capacity_makes_model_unknown(tmp_path: Path) -> None:
    info = NODE_INFO + "H800,eight,192,3\n"
    out = translate(write(tmp_path, "hour,A10,H800\n0,1,1\n", node_info=info), SourceOptions())
    assert [(r[0], r[1]) for r in out.rejects] == [(1, "unknown_gpu_capacity")]
    assert "unreadable" in out.rejects[0][2]
    assert out.table.column("gpu_model").to_pylist() == ["A10"]


def test_bad_value_nulls_the_field_and_keeps_the_row(tmp_path: Path) -> None:
    out = translate(write(tmp_path, "hour,A10,H800\n0,lots,1\nx,2,3\n"), SourceOptions())
    df = out.table.to_pandas()
    assert out.rejects == [] and len(df) == 4
    assert pd.isna(df["gpus_allocated"][0]) and df["gpus_allocated"][1] == 1
    assert df["ts"][:2].notna().all() and df["ts"][2:].isna().all()
    assert df["row_number"].tolist() == [1, 1, 2, 2]


def test_missing_columns_raise(tmp_path: Path) -> None:
    with pytest.raises(SourceReadError, match="hour"):
        translate(write(tmp_path, "h,A10\n0,1\n"), SourceOptions())
    with pytest.raises(SourceReadError, match="no GPU model columns"):
        translate(write(tmp_path, "hour\n0\n"), SourceOptions())
    bad_info = "gpu_model,cpu_num\nA10,128\n"
    with pytest.raises(SourceReadError, match="gpu_capacity_num"):
        translate(write(tmp_path, "hour,A10\n0,1\n", node_info=bad_info), SourceOptions())


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(SourceReadError, match="does not exist"):
        translate(tmp_path / "hourly_concurrency_top_models.csv", SourceOptions())
