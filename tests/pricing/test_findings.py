"""Per-pool pricing findings on a market built through the real catalogue, costs and references:
export variants priced with their factor, unknown names and uncompetitive costs explained."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricing.catalog import GpuCatalog
from pricing.costs import cost_table
from pricing.demand import DemandModel
from pricing.engine import price_fleet
from pricing.findings import explain, pool_findings
from pricing.optimizer import Market
from pricing.reference import comparable_references
from pricing.rules import DemandPrior, PricingRules
from pricing.sheet import public_items
from tests.pricing.test_optimizer import hourly_frame

DATA = Path(__file__).resolve().parents[2] / "data"
RULES = PricingRules()
START = pd.Timestamp("2026-04-21", tz="UTC")


def _rates() -> pd.DataFrame:
    rows = [  # gpu_model, product, usd per GPU-hour
        ("A100-80GB", "spot", 1.40), ("A100-80GB", "on_demand", 3.40),
        ("H100", "spot", 0.92), ("H100", "reserved_3y", 2.97),   # spot cheaper than an H800's cost floor
        ("A10G", "spot", 0.39), ("A10G", "on_demand", 1.00),
    ]
    return pd.DataFrame([{"provider": "aws", "region": "eu-north-1", "sku": f"{m.lower()}.{p}", "product": p,
                          "gpu_model": m, "usd_per_gpu_hour": v, "as_of": pd.Timestamp("2026-01-21"),
                          "source": "test"} for m, p, v in rows])


@pytest.fixture(scope="module")
def priced():
    cat = GpuCatalog.load(DATA / "gpu_catalog.csv", DATA / "gpu_aliases.csv")
    pools = pd.DataFrame({"pool": ["a800", "h800", "anon", "a10"],
                          "gpu_model": ["A800-SXM4-80GB", "NVIDIA H800", "GPU-series-1", "A10"],
                          "region": "dc1", "gpus_total": [100, 100, 100, 100]})
    resolved = cat.resolve(pools["gpu_model"])
    costs = cost_table(resolved, cat, {}, RULES.usd_per_kwh, RULES.pue)
    pools = pools.merge(resolved[["gpu_model", "gpu_class"]]).merge(costs[["gpu_model", "floor"]])
    known = resolved[resolved["gpu_class"].notna()]
    refs = comparable_references(_rates(), known["gpu_model"], dict(zip(known["gpu_model"], known["reference_classes"])),
                                 factors=dict(zip(known["gpu_model"], known["performance_factor"])))
    market = Market(pools=pools, references=refs, resolved=resolved, costs=costs)
    n = 24 * 32
    spread = np.array([20.0, 30, 45, 60, 75, 90, 95])  # q05..q95 of idle GPUs, every hour
    q = {"a800": spread, "h800": spread, "anon": spread, "a10": np.zeros(7)}  # the A10 pool is busy
    hourly = hourly_frame([{"pool": p, "cap": 100, "q": np.tile(v, (n, 1))} for p, v in q.items()], START, days=32)
    demand = DemandModel(DemandPrior(2.0, 0.25))
    items = price_fleet(hourly, market, RULES, demand, START)
    return market, items, pool_findings(items, market, RULES.min_undercut, RULES.usd_per_kwh, RULES.pue)


def test_an_export_variant_is_priced_against_its_twin_with_the_factor(priced) -> None:
    _, items, f = priced
    a800 = items[(items["pool"] == "a800") & items["offered"].astype(bool)]
    assert len(a800) and set(a800["gpu_class"]) == {"A800-80GB"} and set(a800["reference_gpu_model"]) == {"A100-80GB"}
    spot = a800[a800["product"] == "spot"]
    assert np.allclose(spot["reference_list_price"], 1.40) and np.allclose(spot["reference_price"], 1.40 * 0.95)
    assert (spot["price_per_gpu_hour"] <= 0.9 * 1.40 * 0.95 + 1e-9).all()  # the ceiling is on the equivalent price
    pub = public_items(spot.head(1))[0]
    assert pub["gpu_model"] == "A800-SXM4-80GB" and pub["gpu_class"] == "A800-80GB"
    ref = pub["reference"]
    assert (ref["gpu_model"], ref["price"], ref["performance_factor"]) == ("A100-80GB", 1.40, 0.95)
    assert ref["equivalent_price"] == pytest.approx(1.33)
    assert pub["discount_vs_reference"] == pytest.approx(1 - pub["price_per_gpu_hour"] / 1.33, abs=1e-4)
    assert f[(f["pool"] == "a800")]["cause"].tolist() == ["priced"]


def test_uncompetitive_spot_is_explained_with_its_numbers_and_reserved_still_sells(priced) -> None:
    _, items, f = priced
    h = f[f["pool"] == "h800"].set_index("cause")
    assert {"priced", "not_competitive"} <= set(h.index)
    nc = h.loc["not_competitive"]
    assert nc["product"] == "spot" and nc["gpu_class"] == "H800"
    assert "floor $1.07/GPU-h (power 0.70 kW" in nc["detail"] and "amortization 0.86" in nc["detail"]
    assert "ceiling $0.75 = 90% of aws h100.spot spot eu-north-1 $0.92 x 0.90 (H800 vs H100)" in nc["detail"]
    assert "[pricing.costs.H800]" in nc["action"]
    sold = items[(items["pool"] == "h800") & items["offered"].astype(bool)]
    assert len(sold) and set(sold["product"]) <= {"reserved_1d", "reserved_7d", "reserved_30d"}


def test_unknown_names_and_busy_pools_say_what_to_do(priced) -> None:
    _, items, f = priced
    anon = f[f["pool"] == "anon"]
    assert anon["cause"].tolist() == ["unknown_gpu"]
    assert "'GPU-series-1' is not in the GPU catalogue" in anon["detail"].iloc[0]
    assert '[pricing.gpu_aliases] "GPU-series-1" = "<class>"' in anon["action"].iloc[0]
    a10 = f[f["pool"] == "a10"].set_index("product")
    assert a10.loc["spot", "cause"] == "no_capacity" and "forecast idle 0.0 of 100" in a10.loc["spot", "detail"]
    lines = explain(f)
    assert len(lines) == len(f[f["cause"] != "priced"]) and not any(line.startswith("a800") for line in lines)
    assert all(". Fix: " in line for line in lines)
    assert len(explain(pd.concat([f] * 10), limit=5)) == 6  # capped, with a pointer to the rest


def test_many_pools_are_explained_in_one_line_per_cause(priced) -> None:
    from pricing.findings import explain_grouped

    _, _, f = priced
    assert explain_grouped(f) == explain(f)  # few pools: one line each
    many = pd.concat([f.assign(pool=f["pool"] + f"-{i}") for i in range(5)], ignore_index=True)
    lines = explain_grouped(many)
    assert len(lines) == len(f[f["cause"] != "priced"].groupby(["cause", f["product"].fillna("")]))
    unknown = next(x for x in lines if "not in the GPU catalogue" in x)
    assert unknown.startswith("5 pools (anon-0, anon-1, anon-2, anon-3, anon-4) GPU names are not in the GPU catalogue: "
                              "'GPU-series-1'") and '[pricing.gpu_aliases] "<name>" = "<class>"' in unknown
    assert any(x.startswith("5 pools (h800-0") and "spot ceiling" in x for x in lines)


def test_the_price_chart_names_the_reference_and_its_factor(priced) -> None:
    from pricing.plots import reference_label, spot_chart

    _, items, _ = priced
    a800 = items[(items["pool"] == "a800") & (items["product"] == "spot")].iloc[0]
    assert reference_label(a800) == "aws a100-80gb.spot 1.400 x 0.95 = 1.330"
    png = spot_chart(items, "A800-SXM4-80GB")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
