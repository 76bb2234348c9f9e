"""Rebuild data/reference_rates.csv from the shared wide price table (maintainers only).

The shared table has one row per provider x region x instance type with on-demand, spot and
reserved prices side by side; idlecap's reference-rate contract (DESIGN.md) is long: one row per
provider x region x sku x product. Only MIT-licensed datasets, standard regions, real spot prices
(observed AWS AZ prices, Azure Spot meters) and positive prices are shipped; see data/README.md.
The output is sorted so a rebuild from the same input is byte-identical, and it is checked with
idlecap's own loader before it is written.

Usage: python data/build_reference_rates.py [--src ../shared/data/prices/reference_rates.csv]
                                           [--out data/reference_rates.csv]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pricing.reference import PRODUCTS, load_reference_rates  # noqa: E402

COLUMNS = [
    "provider", "region", "region_kind", "sku", "product", "gpu_model", "gpu_variant",
    "gpus_per_instance", "usd_per_instance_hour", "usd_per_gpu_hour", "as_of", "dataset",
    "basis", "source",
]
# Carrier repos with an MIT licence: vantage-sh/ec2instances.info (both AWS sets), andy-diericks/azure-pricing-radar.
DATASETS = ("aws_vantage_2025-11-30", "aws_tsaol_2026-01-21", "azure_retail_eu_2026-08-22")
# Real spot prices only; `spot_advisor_estimate` and `observed_at_on_demand_cap` are not.
SPOT_SOURCES = ("observed", "azure_spot_meter")
# product -> (instance price column, per-GPU price column, basis column or constant)
PRODUCT_COLUMNS = {
    "on_demand": ("on_demand_usd_per_hour", "per_gpu_on_demand", None),
    "spot": ("spot_usd_per_hour", "per_gpu_spot", "spot_source"),
    "reserved_1y": ("reserved_1y_usd_per_hour", "per_gpu_reserved_1y", "reserved_1y_basis"),
    "reserved_3y": ("reserved_3y_usd_per_hour", "per_gpu_reserved_3y", "reserved_3y_basis"),
}


def to_long(wide: pd.DataFrame) -> pd.DataFrame:
    """Wide shared table -> shipped long table (filtered, sorted, columns in contract order)."""
    wide = wide[wide["dataset"].isin(DATASETS) & wide["region_kind"].eq("region")]
    parts = []
    for product, (instance_col, gpu_col, basis_col) in PRODUCT_COLUMNS.items():
        part = wide.assign(
            sku=wide["instance_type"],
            product=product,
            usd_per_instance_hour=wide[instance_col],
            usd_per_gpu_hour=wide[gpu_col],
            basis=wide[basis_col] if basis_col else "pay_as_you_go",
        )
        if product == "spot":  # e.g. "observed (DescribeSpotPriceHistory, ...)" -> "observed"
            part = part.assign(basis=part["basis"].str.split(" ", n=1).str[0])
            part = part[part["basis"].isin(SPOT_SOURCES)]
        parts.append(part[COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    price = out["usd_per_gpu_hour"]
    out = out[np.isfinite(price) & (price > 0) & (out["gpus_per_instance"] > 0)]
    out = out.assign(_p=out["product"].map({p: i for i, p in enumerate(PRODUCTS)}))
    out = out.sort_values(["gpu_model", "_p", "provider", "region", "sku"], kind="mergesort")
    return out.drop(columns="_p").reset_index(drop=True)


def write_csv(df: pd.DataFrame, out: Path) -> None:
    # GPU counts print as 8 / 0.25 rather than 8.0; prices keep their shortest round-trip repr.
    df = df.assign(gpus_per_instance=df["gpus_per_instance"].map(lambda x: f"{x:g}"))
    df.to_csv(out, index=False, lineterminator="\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=REPO.parent / "shared/data/prices/reference_rates.csv")
    ap.add_argument("--out", type=Path, default=REPO / "data/reference_rates.csv")
    args = ap.parse_args(argv)

    long = to_long(pd.read_csv(args.src))
    tmp = args.out.with_name(f"{args.out.stem}.tmp{args.out.suffix}")
    write_csv(long, tmp)
    load_reference_rates(tmp)  # the shipped file must pass the strict loader
    tmp.replace(args.out)
    counts = long.groupby(["provider", "product"]).size()
    print(f"wrote {len(long):,} rows to {args.out} ({args.out.stat().st_size / 1e3:.1f} kB)")
    print(counts.to_string())


if __name__ == "__main__":
    main()
