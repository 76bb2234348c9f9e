"""Cost floors per GPU: the catalogue's cost of its class, with the operator's overrides on top.

floor = power_kw x PUE x USD/kWh + amortization + overhead, per GPU-hour (DESIGN: never sell
below marginal cost). An override (`[pricing.costs.<name>]`) may name the telemetry GPU name or
its catalogue class (compared after normalisation: a key spelling the class name covers every
pool of the class, any other key the pools whose GPU name it spells); the telemetry name wins,
and fields it leaves unset keep the catalogue's.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pricing.catalog import GpuCatalog, normalize

COST_FIELDS = ("power_kw", "amortization_usd_per_gpu_hour", "overhead_usd_per_gpu_hour")
COST_COLUMNS = ["gpu_model", *COST_FIELDS, "floor", "cost_source"]


def cost_table(resolved: pd.DataFrame, catalog: GpuCatalog, overrides: Mapping[str, Mapping[str, float]],
               usd_per_kwh: float, pue: float) -> pd.DataFrame:
    """One row per resolved gpu_model: cost parts, floor (NaN when the class is unknown) and where they came from."""
    rows = []
    for r in resolved.itertuples(index=False):
        cls = r.gpu_class if isinstance(r.gpu_class, str) else None
        base = catalog.cost(cls) if cls is not None else {}
        source = f"catalogue:{cls}" if cls is not None else "none"
        # a key spelling the class name covers the class; any other key one telemetry name (spelling-insensitive)
        by_class = [k for k in overrides if cls is not None and normalize(k) == normalize(cls)
                    and normalize(k) != normalize(r.gpu_model)]
        by_name = [k for k in overrides if normalize(k) == normalize(r.gpu_model)]
        for key in by_class + by_name:
            if overrides[key]:
                base = {**base, **overrides[key]}
                source = f"settings:{key}"
        if all(f in base for f in COST_FIELDS):
            floor = base["power_kw"] * pue * usd_per_kwh + base["amortization_usd_per_gpu_hour"] + base["overhead_usd_per_gpu_hour"]
        else:
            floor = np.nan
        rows.append({"gpu_model": r.gpu_model, **{f: base.get(f, np.nan) for f in COST_FIELDS}, "floor": floor,
                     "cost_source": source})
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def describe_floor(row: Mapping[str, float], usd_per_kwh: float, pue: float) -> str:
    """`$1.07 (power 0.70 kW x PUE 1.3 x $0.12/kWh = 0.11, amortization 0.86, overhead 0.10)`."""
    energy = row["power_kw"] * pue * usd_per_kwh
    return (f"${row['floor']:.2f}/GPU-h (power {row['power_kw']:.2f} kW x PUE {pue:g} x ${usd_per_kwh:g}/kWh = "
            f"{energy:.2f}, amortization {row['amortization_usd_per_gpu_hour']:.2f}, "
            f"overhead {row['overhead_usd_per_gpu_hour']:.2f})")
