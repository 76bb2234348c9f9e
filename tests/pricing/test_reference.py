"""Reference rates: the shipped file, strict validation, replaceability, comparable lookup."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pricing.reference import (
    COMPARABLE,
    PRODUCTS,
    ReferenceRatesError,
    comparable_references,
    load_reference_rates,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "data" / "reference_rates.csv"
SHARED_SRC = REPO.parent / "shared" / "data" / "prices" / "reference_rates.csv"
BUILD = REPO / "data" / "build_reference_rates.py"

HEADER = "provider,region,sku,product,gpu_model,gpus_per_instance,usd_per_gpu_hour,as_of,source"
ROWS = [
    "aws,us-east-1,p5.48xlarge,on_demand,H100,8,6.88,2025-11-30,src-a",
    "aws,us-east-1,p5.48xlarge,spot,H100,8,3.51,2025-11-30,src-a",
    "aws,us-east-1,p5.48xlarge,reserved_3y,H100,8,2.97,2025-11-30,src-a",
    "aws,eu-north-1,p5.48xlarge,spot,H100,8,0.92,2025-11-30,src-a",
    "azure,westeurope,ND96isr_H100_v5,on_demand,H100,8,15.98,2026-08-22,src-b",
    "azure,westeurope,ND96isr_H100_v5,spot,H100,8,2.95,2026-08-22,src-b",
    "aws,us-east-1,p4de.24xlarge,on_demand,A100-80GB,8,3.43,2025-11-30,src-a",
    "aws,us-east-1,p4de.24xlarge,spot,A100-80GB,8,1.67,2025-11-30,src-a",
    "aws,us-east-1,p4d.24xlarge,spot,A100-40GB,8,1.07,2025-11-30,src-a",
    "aws,us-east-1,p4d.24xlarge,on_demand,A100-40GB,8,2.74,2025-11-30,src-a",
    # V100 is cheaper on-demand than any spot row of another model: spot must still pick spot.
    "aws,us-east-1,p3.2xlarge,on_demand,V100,1,0.10,2025-11-30,src-a",
    "azure,westeurope,NC6s_v3,spot,V100,1,0.71,2026-08-22,src-b",
]


def write(path: Path, *lines: str, header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


@pytest.fixture
def rates(tmp_path: Path) -> pd.DataFrame:
    return load_reference_rates(write(tmp_path / "rates.csv", *ROWS))


def rejected(tmp_path: Path, *lines: str, header: str = HEADER) -> str:
    with pytest.raises(ReferenceRatesError) as exc:
        load_reference_rates(write(tmp_path / "bad.csv", *lines, header=header))
    return str(exc.value)


# --- the shipped file -------------------------------------------------------------------------

def test_shipped_file_loads_with_both_providers_and_the_fleet_gpus() -> None:
    df = load_reference_rates(SHIPPED)
    assert list(df.columns) == [
        "provider", "region", "region_kind", "sku", "product", "gpu_model", "gpu_variant",
        "gpus_per_instance", "usd_per_instance_hour", "usd_per_gpu_hour", "as_of", "dataset",
        "basis", "source",
    ]
    assert pd.api.types.is_datetime64_dtype(df["as_of"])
    assert df["usd_per_gpu_hour"].dtype == float and (df["usd_per_gpu_hour"] > 0).all()
    assert set(df["product"]) <= set(PRODUCTS)
    assert set(df["region_kind"]) == {"region"}
    assert set(df["dataset"]) == {"aws_vantage_2025-11-30", "aws_tsaol_2026-01-21", "azure_retail_eu_2026-08-22"}
    assert set(df.loc[df["product"] == "spot", "basis"]) == {"observed", "azure_spot_meter"}
    have = set(df.groupby(["gpu_model", "provider", "product"]).groups)
    for gpu in ("H100", "A100-80GB", "V100"):
        for provider in ("aws", "azure"):
            for product in ("spot", "on_demand"):
                assert (gpu, provider, product) in have, (gpu, provider, product)
    # per-GPU price is the instance price spread over the GPUs
    ratio = df["usd_per_instance_hour"] / df["gpus_per_instance"] / df["usd_per_gpu_hour"]
    assert ratio.between(0.9999, 1.0001).all()


@pytest.mark.skipif(not SHARED_SRC.is_file(), reason="rebuild check needs ../shared/data/prices beside the clone (development checkouts only); the shipped file itself is validated by the other tests")
def test_rebuild_reproduces_the_shipped_file_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "rebuilt.csv"
    subprocess.run(
        [sys.executable, str(BUILD), "--src", str(SHARED_SRC), "--out", str(out)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    assert out.read_bytes() == SHIPPED.read_bytes()


# --- strict validation ------------------------------------------------------------------------

def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_reference_rates(tmp_path / "nope.csv")


def test_missing_columns_are_named(tmp_path: Path) -> None:
    header = HEADER.replace(",as_of", "").replace(",gpus_per_instance", "")
    msg = rejected(tmp_path, "aws,r,s,spot,H100,1.0,src", header=header)
    assert "missing required column(s): gpus_per_instance, as_of" in msg


@pytest.mark.parametrize("content", [HEADER + "\n", ""])
def test_empty_file_is_rejected(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(ReferenceRatesError, match="no reference rates"):
        load_reference_rates(path)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("aws,r,s,capacity,H100,8,1.0,2025-11-30,x", "line 3: product: unknown product"),
        ("aws,r,s,spot,H100,8,0,2025-11-30,x", "line 3: usd_per_gpu_hour: must be a finite number > 0 (value='0')"),
        ("aws,r,s,spot,H100,8,-2.5,2025-11-30,x", "line 3: usd_per_gpu_hour: must be a finite number > 0 (value='-2.5')"),
        ("aws,r,s,spot,H100,8,inf,2025-11-30,x", "line 3: usd_per_gpu_hour: must be a finite number > 0 (value='inf')"),
        ("aws,r,s,spot,H100,8,cheap,2025-11-30,x", "line 3: usd_per_gpu_hour: must be a finite number > 0 (value='cheap')"),
        ("aws,r,s,spot,H100,8,,2025-11-30,x", "line 3: usd_per_gpu_hour: must be a finite number > 0 (value='')"),
        ("aws,r,s,spot,H100,0,1.0,2025-11-30,x", "line 3: gpus_per_instance: must be a finite number > 0 (value='0')"),
        ("aws,r,s,spot,H100,8,1.0,unknown (est. 2024),x", "line 3: as_of: not a date"),
        ("aws,r,s,spot,H100,8,1.0,2025-13-45,x", "line 3: as_of: not a date"),
        (",r,s,spot,H100,8,1.0,2025-11-30,x", "line 3: provider: must not be empty (value='')"),
        ("aws,r, ,spot,H100,8,1.0,2025-11-30,x", "line 3: sku: must not be empty (value=' ')"),
        ("aws,r,s,spot,,8,1.0,2025-11-30,x", "line 3: gpu_model: must not be empty"),
        ("aws,r,s,spot,H100,8,1.0,2025-11-30,", "line 3: source: must not be empty"),
    ],
)
def test_each_bad_row_rejects_the_file_with_line_and_column(tmp_path: Path, row: str, expected: str) -> None:
    good = "aws,r,ok,on_demand,H100,8,2.0,2025-11-30,x"
    msg = rejected(tmp_path, good, row)
    assert expected in msg
    assert "whole file is rejected" in msg and msg.count("\nline ") == 1


def test_duplicate_key_points_at_the_first_occurrence(tmp_path: Path) -> None:
    msg = rejected(
        tmp_path,
        "aws,us-east-1,p5,spot,H100,8,3.5,2025-11-30,x",
        "aws,us-east-1,p5,on_demand,H100,8,6.9,2025-11-30,x",
        "aws,us-east-1,p5,spot,H100,8,0.9,2025-11-30,y",  # same key, other price: which one is right?
    )
    assert "line 4: provider/region/sku/product: duplicate of line 2 (value='aws/us-east-1/p5/spot')" in msg


def test_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    msg = rejected(tmp_path, "", "aws,r,s,spot,H100,8,2.0,2025-11-30,x", "", "aws,r,t,spot,H100,8,-1,2025-11-30,x")
    assert "line 5: usd_per_gpu_hour" in msg  # header, blank, row, blank, row


def test_every_problem_is_listed_up_to_twenty(tmp_path: Path) -> None:
    rows = [f"aws,r,s{i},spot,H100,8,-1,nodate,x" for i in range(15)]  # 2 problems per row
    msg = rejected(tmp_path, *rows)
    lines = [ln for ln in msg.splitlines() if ln.startswith("line ")]
    assert len(lines) == 20
    assert lines[0].startswith("line 2: usd_per_gpu_hour") and lines[1].startswith("line 2: as_of")
    assert msg.splitlines()[-1] == "... and 10 more"
    assert "30 problem(s)" in msg


def test_types_and_iso_timestamps(rates: pd.DataFrame, tmp_path: Path) -> None:
    assert rates["usd_per_gpu_hour"].dtype == float and rates["gpus_per_instance"].dtype == float
    assert rates["as_of"].iloc[0] == pd.Timestamp("2025-11-30")
    df = load_reference_rates(write(tmp_path / "ts.csv", "aws,r,s,spot,L4,0.125,0.5,2026-01-21T10:00:00Z,x"))
    assert df["as_of"].iloc[0] == pd.Timestamp("2026-01-21 10:00") and df["gpus_per_instance"].iloc[0] == 0.125


# --- replaceable without code changes ---------------------------------------------------------

def test_newer_file_with_extra_column_replaces_the_old_one(rates: pd.DataFrame, tmp_path: Path) -> None:
    before = comparable_references(rates, ["H100"]).set_index("product_class")
    newer = [
        "aws,us-east-1,p5.48xlarge,spot,H100,8,2.10,2026-09-01,src-c,interruptible",
        "aws,us-east-1,p5.48xlarge,capacity_block,H100,8,2.60,2026-09-01,src-c,",
        "lambda,us-south-1,gpu_8x_h100_sxm5,on_demand,H100,8,2.99,2026-09-01,src-d,",
    ]
    df = load_reference_rates(write(tmp_path / "newer.csv", *newer, header=HEADER + ",notes"))
    assert df["notes"].iloc[0] == "interruptible" and df["notes"].iloc[1:].isna().all()
    after = comparable_references(df, ["H100"]).set_index("product_class")
    assert before.loc["spot", "usd_per_gpu_hour"] == 0.92
    assert after.loc["spot", ["provider", "usd_per_gpu_hour"]].tolist() == ["aws", 2.10]
    assert before.loc["reserved", "product"] == "reserved_3y"
    assert after.loc["reserved", ["product", "usd_per_gpu_hour"]].tolist() == ["capacity_block", 2.60]


def test_parquet_file_loads_the_same(rates: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "rates.parquet"
    rates.to_parquet(path)
    df = load_reference_rates(path)
    pd.testing.assert_frame_equal(
        comparable_references(df, ["H100", "V100"]), comparable_references(rates, ["H100", "V100"])
    )


# --- comparable lookup ------------------------------------------------------------------------

def test_cheapest_per_model_and_class(rates: pd.DataFrame) -> None:
    out = comparable_references(rates, ["H100", "A100-80GB"])
    assert list(out.columns) == [
        "gpu_model", "product_class", "provider", "region", "sku", "product", "usd_per_gpu_hour",
        "as_of", "source", "n_candidates", "reference_gpu_model", "list_usd_per_gpu_hour", "performance_factor",
    ]
    got = {(r.gpu_model, r.product_class): (r.provider, r.region, r.product, r.usd_per_gpu_hour, r.n_candidates)
           for r in out.itertuples()}
    assert got == {
        ("H100", "spot"): ("aws", "eu-north-1", "spot", 0.92, 3),
        ("H100", "reserved"): ("aws", "us-east-1", "reserved_3y", 2.97, 3),
        ("A100-80GB", "spot"): ("aws", "us-east-1", "spot", 1.67, 1),
        ("A100-80GB", "reserved"): ("aws", "us-east-1", "on_demand", 3.43, 1),
    }
    assert out["as_of"].iloc[0] == pd.Timestamp("2025-11-30") and out["source"].iloc[0] == "src-a"


def test_provider_and_region_filters(rates: pd.DataFrame) -> None:
    out = comparable_references(rates, ["H100"], providers=["azure"]).set_index("product_class")
    assert out.loc["spot", ["sku", "usd_per_gpu_hour"]].tolist() == ["ND96isr_H100_v5", 2.95]
    assert out.loc["reserved", ["product", "usd_per_gpu_hour"]].tolist() == ["on_demand", 15.98]
    out = comparable_references(rates, ["H100"], regions=["us-east-1"]).set_index("product_class")
    assert out.loc["spot", "usd_per_gpu_hour"] == 3.51
    assert comparable_references(rates, ["H100"], providers=["gcp"]).empty


def test_gpu_model_map_widens_the_candidates(rates: pd.DataFrame) -> None:
    out = comparable_references(rates, ["A100"], {"A100": ["A100-80GB", "A100-40GB"]}).set_index("product_class")
    assert out["gpu_model"].tolist() == ["A100", "A100"]
    assert out.loc["spot", ["sku", "usd_per_gpu_hour", "n_candidates"]].tolist() == ["p4d.24xlarge", 1.07, 2]
    assert out.loc["reserved", ["sku", "usd_per_gpu_hour"]].tolist() == ["p4d.24xlarge", 2.74]
    # without the map, "A100" matches nothing
    assert comparable_references(rates, ["A100"]).empty


def test_models_without_candidates_get_no_row(rates: pd.DataFrame) -> None:
    out = comparable_references(rates, ["B200", "H100", "B200"])
    assert out["gpu_model"].tolist() == ["H100", "H100"]
    only_reserved = comparable_references(rates, ["A100-40GB"], regions=["us-east-1"], providers=["aws"])
    assert set(only_reserved["product_class"]) == {"spot", "reserved"}
    no_spot = rates[rates["product"] != "spot"]
    assert comparable_references(no_spot, ["H100"])["product_class"].tolist() == ["reserved"]


def test_spot_never_picks_on_demand(rates: pd.DataFrame) -> None:
    out = comparable_references(rates, ["V100"]).set_index("product_class")
    assert out.loc["spot", ["product", "usd_per_gpu_hour"]].tolist() == ["spot", 0.71]
    assert out.loc["reserved", ["product", "usd_per_gpu_hour"]].tolist() == ["on_demand", 0.10]
    shipped = comparable_references(load_reference_rates(SHIPPED), ["H100", "A100-80GB", "V100", "L40S"])
    assert (shipped.loc[shipped["product_class"] == "spot", "product"] == "spot").all()
    assert set(shipped.loc[shipped["product_class"] == "reserved", "product"]) <= set(COMPARABLE["reserved"])


def test_ties_break_on_provider_region_sku(tmp_path: Path) -> None:
    rows = [
        "azure,a,z,spot,T4,1,0.5,2026-08-22,x",
        "aws,b,y,spot,T4,1,0.5,2025-11-30,x",
        "aws,a,y,spot,T4,1,0.5,2025-11-30,x",
        "aws,a,x,spot,T4,1,0.5,2025-11-30,x",
    ]
    for order in (rows, rows[::-1]):
        df = load_reference_rates(write(tmp_path / "tie.csv", *order))
        best = comparable_references(df, ["T4"]).iloc[0]
        assert (best.provider, best.region, best.sku) == ("aws", "a", "x")


def test_no_models_gives_empty_frame_with_columns(rates: pd.DataFrame) -> None:
    out = comparable_references(rates, [])
    assert out.empty and "n_candidates" in out.columns
