"""How long one pricing pass takes as the fleet grows (synthetic forecasts, prior demand).

Prints seconds per pass and the ratio to the 16-pool pass measured in the same process
(the machine is shared: ratios are steadier than seconds).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from models.base import QCOLS, QUANTILES
from pricing.demand import DemandModel
from pricing.engine import price_fleet
from pricing.optimizer import Market
from pricing.rules import PricingRules

H = 24 * 32
START = pd.Timestamp("2026-01-05", tz="UTC")


def fleet(n: int, seed: int = 0) -> tuple[pd.DataFrame, Market]:
    rng = np.random.default_rng(seed)
    caps = rng.choice([16, 32, 64, 128, 256], size=n).astype(float)
    ds = pd.date_range(START, periods=H, freq="h")
    level = rng.uniform(0.1, 0.9, size=(n, 1)) * caps[:, None] * (1 + 0.2 * np.sin(np.arange(H) / 24 * 2 * np.pi))
    spread = caps[:, None] * 0.15
    z = np.array([-1.645, -1.2816, -0.6745, 0, 0.6745, 1.2816, 1.645])
    q = np.clip(level[..., None] + spread[..., None] * z, 0, caps[:, None, None])
    pools = [f"pool-{i:04d}" for i in range(n)]
    hourly = pd.DataFrame({"unique_id": np.repeat(pools, H), "ds": np.tile(ds, n), "mean": q[..., 3].ravel()})
    for j, c in enumerate(QCOLS):
        hourly[c] = q[..., j].ravel()
    hourly["gpus_total"] = np.repeat(caps, H)
    models = np.array(["H100", "A100", "V100"])[np.arange(n) % 3]
    p = pd.DataFrame({"pool": pools, "gpu_model": models, "gpus_total": caps, "region": "dc1",
                      "floor": pd.Series(models).map({"H100": 1.07, "A100": 0.57, "V100": 0.1}).to_numpy()})
    refs = pd.DataFrame([dict(gpu_model=g, product_class=c, provider="aws", region="us-east-1", sku="x",
                              product="spot" if c == "spot" else "on_demand", usd_per_gpu_hour=v,
                              as_of=pd.Timestamp("2025-11-30"))
                         for g, (s, r) in {"H100": (2.0, 6.9), "A100": (1.3, 3.4), "V100": (0.32, 3.06)}.items()
                         for c, v in (("spot", s), ("reserved", r))])
    return hourly, Market(p, refs)


def one(n: int) -> float:
    hourly, market = fleet(n)
    t = time.perf_counter()
    items = price_fleet(hourly, market, PricingRules(), DemandModel().fit(None), START + pd.Timedelta(hours=1))
    dt = time.perf_counter() - t
    print(f"{n:>6} pools: {dt:7.2f} s, {int(items['offered'].sum()):>7,} items offered", flush=True)
    return dt


if __name__ == "__main__":
    assert len(QUANTILES) == 7
    base = one(16)
    for n in (100, 1000):
        dt = one(n)
        print(f"        ratio to 16 pools: {dt / base:6.1f}x for {n / 16:.0f}x the pools")
