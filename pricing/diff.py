"""What changed between two sheets, and why, for every price that moved more than the threshold.

Items are matched like the stability guardrail matches them (same pool/product/start, else the
nearest start). A move is explained by what moved underneath it: the forecast (expected idle or
GPUs offered), the reference (the price it undercuts), or a guardrail (a bound or a hold).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

_KEY = ["pool", "product", "start"]
DIFF_COLS = ["pool", "product", "start", "old_start", "old_price", "new_price", "change", "old_gpus", "new_gpus",
             "reasons"]


def _pair(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    left = new.reset_index(drop=True).reset_index().sort_values("start")
    right = old.rename(columns={c: f"old_{c}" for c in old.columns if c not in ("pool", "product")})
    right = right.assign(start=right["old_start"].astype(left["start"].dtype)).sort_values("start")  # same unit/tz
    return pd.merge_asof(left, right, on="start", by=["pool", "product"], direction="nearest").sort_values("index")


def explain(r: pd.Series, forecast_tol: float) -> list[str]:
    reasons = []
    cap = r.get("gpus_total") or np.nan
    for col, label in (("expected_idle_gpus", "expected idle"), ("window_min_quantile", "window-min idle quantile")):
        a, b = r.get(f"old_{col}"), r.get(col)
        if pd.notna(a) and pd.notna(b) and abs(b - a) > forecast_tol * (cap if np.isfinite(cap) else max(abs(a), 1)):
            reasons.append(f"forecast moved: {label} {a:.1f} -> {b:.1f} GPUs")
    if r.get("old_gpus_offered") != r.get("gpus_offered") and not any(x.startswith("forecast") for x in reasons):
        reasons.append(f"forecast moved: GPUs offered {r.get('old_gpus_offered')} -> {r.get('gpus_offered')}")
    a, b = r.get("old_reference_price"), r.get("reference_price")
    if pd.notna(a) and pd.notna(b) and (abs(b - a) > 1e-9 or r.get("old_reference_sku") != r.get("reference_sku")):
        reasons.append(f"reference moved: {r.get('old_reference_provider')} {r.get('old_reference_sku')} {a:.4f} -> "
                       f"{r.get('reference_provider')} {r.get('reference_sku')} {b:.4f}")
    g = [x for x in (r.get("guardrails") or []) if x]
    if g:
        reasons.append("guardrail hit: " + ", ".join(g))
    if not reasons:
        reasons.append("optimizer: demand curve / spot prices moved (forecast and reference unchanged)")
    return reasons


def diff_items(new: pd.DataFrame, old: pd.DataFrame | None, threshold: float = 0.05,
               forecast_tol: float = 0.02) -> tuple[pd.DataFrame, dict[str, int]]:
    """Changes larger than `threshold` (relative) with reasons, plus counts: `added` / `removed` items
    with no item at the same start on the other sheet, `changed` items that moved past the threshold
    against the same block or, for an added one, the nearest old block (as the daily cap judges them)."""
    new = new[new["offered"].astype(bool)] if "offered" in new else new
    if old is None or old.empty:
        return pd.DataFrame(columns=DIFF_COLS), {"added": len(new), "removed": 0, "changed": 0, "unchanged": 0}
    old = old[old["offered"].astype(bool)] if "offered" in old else old
    p = _pair(new, old)
    exact = p["old_start"] == p["start"]
    change = p["price_per_gpu_hour"] / p["old_price_per_gpu_hour"] - 1
    big = change.abs() > threshold
    rows = p[big & p["old_price_per_gpu_hour"].notna()]
    out = pd.DataFrame({
        "pool": rows["pool"], "product": rows["product"], "start": rows["start"],
        # a new block is compared with the nearest old one: say which (in the new sheet's time unit)
        "old_start": pd.to_datetime(rows["old_start"], utc=True).astype(rows["start"].dtype),
        "old_price": rows["old_price_per_gpu_hour"], "new_price": rows["price_per_gpu_hour"],
        "change": change[rows.index], "old_gpus": rows["old_gpus_offered"], "new_gpus": rows["gpus_offered"],
        "reasons": ["; ".join(explain(r, forecast_tol)) for _, r in rows.iterrows()],
    })
    old_keys = set(map(tuple, old[_KEY].astype(str).to_numpy()))
    new_keys = set(map(tuple, new[_KEY].astype(str).to_numpy()))
    counts = {"added": len(new_keys - old_keys), "removed": len(old_keys - new_keys), "changed": int(len(out)),
              "unchanged": int((~big & exact).sum())}
    return out.reset_index(drop=True), counts
