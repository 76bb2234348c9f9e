"""Cost floors per GPU class: catalogue values, operator overrides by class or telemetry name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pricing.catalog import GpuCatalog
from pricing.costs import cost_table, describe_floor

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def cat() -> GpuCatalog:
    return GpuCatalog.load(DATA / "gpu_catalog.csv", DATA / "gpu_aliases.csv")


def test_floors_follow_the_class_generation(cat: GpuCatalog) -> None:
    names = ["NVIDIA H100 80GB HBM3", "NVIDIA A10", "Tesla V100-SXM2-16GB", "Tesla T4", "GPU-series-1"]
    t = cost_table(cat.resolve(names), cat, {}, usd_per_kwh=0.12, pue=1.3).set_index("gpu_model")
    h100, a10, v100, t4 = (t.loc[n, "floor"] for n in names[:4])
    assert h100 == pytest.approx(0.70 * 1.3 * 0.12 + 0.86 + 0.10)
    assert a10 == pytest.approx(0.15 * 1.3 * 0.12 + 0.10 + 0.06)
    assert h100 > a10 > v100 > t4 > 0  # newer, dearer GPUs carry amortization; written-off ones power only
    assert np.isnan(t.loc["GPU-series-1", "floor"]) and t.loc["GPU-series-1", "cost_source"] == "none"
    assert t.loc["Tesla T4", "cost_source"] == "catalogue:T4"


def test_overrides_by_class_then_by_telemetry_name_keep_unset_fields(cat: GpuCatalog) -> None:
    names = ["NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"]  # both class A100-80GB
    over = {"a100-80gb": {"amortization_usd_per_gpu_hour": 0.0},       # the class, spelt loosely
            "nvidia a100 80gb pcie": {"power_kw": 0.3}}                # one telemetry name, spelt loosely
    t = cost_table(cat.resolve(names), cat, over, usd_per_kwh=0.10, pue=1.0).set_index("gpu_model")
    a = t.loc["NVIDIA A100-SXM4-80GB"]
    assert (a["power_kw"], a["amortization_usd_per_gpu_hour"], a["cost_source"]) == (0.4, 0.0, "settings:a100-80gb")
    b = t.loc["NVIDIA A100 80GB PCIe"]  # the telemetry name's own override on top of the class's
    assert (b["power_kw"], b["amortization_usd_per_gpu_hour"]) == (0.3, 0.0)
    assert b["floor"] == pytest.approx(0.3 * 0.10 + 0.0 + 0.08) and b["cost_source"] == "settings:nvidia a100 80gb pcie"
    text = describe_floor(b, 0.10, 1.0)
    assert text.startswith("$0.11/GPU-h (power 0.30 kW") and "amortization 0.00" in text


def test_misspelt_cost_keys_and_alias_targets_fail_at_load() -> None:
    from pydantic import ValidationError

    from pipelines.settings import PricingSettings

    p = PricingSettings(gpu_aliases={"GPU-series-1": "a100-80gb"}, costs={"h800": {"power_kw": 0.6}})
    assert p.gpu_aliases == {"GPU-series-1": "A100-80GB"}  # the class named canonically
    for bad, msg in (({"costs": {"H100X": {"power_kw": 1}}}, "'H100X' names no GPU class"),
                     ({"costs": {"default": {"power_kw": 1}}}, "'default' is gone"),
                     ({"gpu_aliases": {"x": "nope"}}, "unknown GPU class")):
        with pytest.raises(ValidationError, match=msg):
            PricingSettings(**bad)
    # a cost key may name a GPU the operator mapped in [pricing.gpu_aliases]
    PricingSettings(gpu_aliases={"GPU-series-1": "L40S"}, costs={"GPU-series-1": {"power_kw": 0.3}})
