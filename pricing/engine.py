"""One pricing pass: forecast + market + rules + last sheet -> every candidate item, guarded.

Order: reserved quantities (they come first: reserved GPUs are promised, spot gets the rest)
-> spot offers and prices -> spot guardrails -> reserved prices (never under spot's expected
price) -> reserved guardrails. Pools on hold (stale telemetry, failed forecast checks) keep the
last sheet's items that have not started yet, marked `hold_last:<reason>`.
Every candidate is returned; `offered` says which go on the sheet, `withdraw_reason` why not.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pricing.capacity_risk import CapacityRisk
from pricing.demand import DemandModel
from pricing.drawdown import Drawdowns
from pricing.guardrails import apply_guardrails
from pricing.optimizer import Market, reserved_prices, reserved_quantities, spot_offers
from pricing.rules import PricingRules

ITEM_COLS = [
    "pool", "gpu_model", "gpu_class", "region", "product", "start", "end", "hours", "price_per_gpu_hour", "gpus_offered",
    "interruption_risk", "reference_provider", "reference_region", "reference_sku", "reference_product",
    "reference_price", "reference_as_of", "discount_vs_reference", "floor", "ceiling", "spot_expected_price",
    "last_price", "base_price", "guardrails", "offered", "withdraw_reason", "expected_idle_gpus",
    "expected_gpu_hours_sold", "window_min_quantile", "newsvendor_level", "history_cap", "gpus_total",
    "reference_gpu_model", "reference_list_price", "performance_factor", "break_probability", "risk_value",
]


def match_last(items: pd.DataFrame, last: pd.DataFrame | None) -> pd.Series:
    """The last published price of each item: same pool/product/start, else the nearest start."""
    if last is None or last.empty:
        return pd.Series(np.nan, index=items.index)
    left = items[["pool", "product", "start"]].reset_index().sort_values("start")
    # same dtype on both sides: merge_asof refuses datetime64[us, UTC] vs [ns, UTC] (pandas keeps units)
    right = last[["pool", "product", "start", "price_per_gpu_hour"]].astype({"start": left["start"].dtype})
    right = right.sort_values("start")
    right = right.rename(columns={"price_per_gpu_hour": "last_price"})
    m = pd.merge_asof(left, right, on="start", by=["pool", "product"], direction="nearest")
    return m.set_index("index")["last_price"].reindex(items.index)


def _guard(df: pd.DataFrame, rules: PricingRules, last: pd.DataFrame | None, parity: bool) -> pd.DataFrame:
    df = df.copy()
    df["last_price"] = match_last(df, last)
    p, flags, withdraw = apply_guardrails(
        df["base_price"].to_numpy(float), df["floor"].to_numpy(float), df["ceiling"].to_numpy(float),
        df["last_price"].to_numpy(float), rules.max_daily_change,
        df["spot_expected_price"].to_numpy(float) if parity else None,
    )
    df["price_per_gpu_hour"] = p
    df["guardrails"] = flags
    reason = np.select(
        [df["reference_price"].isna(), ~df["complete"].astype(bool), withdraw | df["base_price"].isna(),
         df["gpus_offered"] < rules.min_gpus],
        ["no_reference", "forecast_too_short", "floor_above_ceiling", "no_capacity"], default="",
    )
    df["withdraw_reason"] = reason
    df["offered"] = reason == ""
    df["final_price"] = np.where(df["offered"], p, np.nan)
    return df


def _expected_sold(res: pd.DataFrame, demand: DemandModel) -> np.ndarray:
    """GPU-hours the demand curve expects to sell of each reserved tranche at its final price."""
    out = np.zeros(len(res))
    for i, r in enumerate(res.itertuples(index=False)):
        if r.offered and r.gpus_offered > 0 and np.isfinite(r.price_per_gpu_hour):
            want = demand.curve(str(r.gpu_model), r.product).gpus(r.price_per_gpu_hour, r.reference_price, r.gpus_total)
            out[i] = min(float(want), float(r.gpus_offered)) * float(r.hours)
    return out


def reprice_expected_sold(items: pd.DataFrame, prior_price: np.ndarray, demand: DemandModel) -> pd.Series:
    """Expected GPU-hours sold at each item's final price after a step (guardrails, an override)
    moved it from `prior_price`, so the night's expected revenue is that of the published prices.

    Reserved: the demand curve at the final price, as the engine computes it. Spot: the optimizer's
    expectation at `prior_price` scaled by the curve's demand ratio (price ratio ^ -elasticity), at
    most the GPU-hours offered; the optimizer's expectation over capacity samples is not redone,
    so a raise is slightly under-, a cut slightly over-counted when capacity binds."""
    out = pd.to_numeric(items["expected_gpu_hours_sold"], errors="coerce").astype(float).copy()
    new = pd.to_numeric(items["price_per_gpu_hour"], errors="coerce").to_numpy(float)
    old = np.asarray(prior_price, float)
    moved = np.isfinite(new) & np.isfinite(old) & (old > 0) & (np.abs(new - old) > 1e-12) & items["offered"].astype(bool).to_numpy()
    if not moved.any():
        return out
    res = moved & (items["product"] != "spot").to_numpy()
    if res.any():
        sub = items[res]
        if {"gpus_total", "reference_price", "gpu_model"} <= set(sub.columns):
            out[res] = _expected_sold(sub, demand)
    spot = moved & (items["product"] == "spot").to_numpy()
    if spot.any():  # one curve per GPU model, not per item (a fleet night has tens of thousands of blocks)
        models = items["gpu_model"].astype(str).to_numpy()[spot]
        e = pd.Series(models).map({g: demand.curve(g, "spot").elasticity for g in set(models)}).to_numpy(float)
        cap = (pd.to_numeric(items["gpus_offered"], errors="coerce") * pd.to_numeric(items["hours"], errors="coerce")
               ).to_numpy(float)[spot]
        out[spot] = np.minimum(out[spot].to_numpy(float) * (new[spot] / old[spot]) ** (-e), cap)  # NaN stays NaN
    return out


def held_items(last: pd.DataFrame | None, hold: dict[str, str], valid_from: pd.Timestamp) -> pd.DataFrame:
    """The last sheet's not-yet-started items of held pools, unchanged, marked hold_last."""
    if last is None or last.empty or not hold:
        return pd.DataFrame(columns=ITEM_COLS)
    h = last[last["pool"].isin(list(hold)) & (last["start"] >= valid_from)].copy()
    h["guardrails"] = [[x for x in g if not str(x).startswith("hold_last:")] + [f"hold_last:{hold[p]}"]
                       for g, p in zip(h["guardrails"], h["pool"])]
    h["offered"] = True
    h["withdraw_reason"] = ""
    h["last_price"] = h["price_per_gpu_hour"]
    h["base_price"] = h["price_per_gpu_hour"]
    return h


def price_fleet(
    hourly: pd.DataFrame, market: Market, rules: PricingRules, demand: DemandModel,
    valid_from: pd.Timestamp, last: pd.DataFrame | None = None, hold: dict[str, str] | None = None,
    drawdowns: Drawdowns | None = None, anchor: pd.DataFrame | None = None, booked: pd.DataFrame | None = None,
    risk: CapacityRisk | None = None,
) -> pd.DataFrame:
    """Every candidate item (ITEM_COLS) for the sheet that becomes valid at `valid_from`.

    `last` is the newest sheet (held pools keep its items); `anchor` (default: `last`) is the sheet
    max_daily_change is measured against - the one in force a day earlier, so re-running every
    hour cannot compound +-15% steps. `risk` (fitted at `valid_from`) sizes reserved terms and
    spot blocks by their break probability; without it the forecast quantiles do."""
    anchor = last if anchor is None else anchor
    hold = hold or {}
    live = market.pools[~market.pools["pool"].isin(list(hold))].reset_index(drop=True)
    frames = []
    if len(live):
        m = Market(pools=live, references=market.references, resolved=market.resolved, costs=market.costs)
        res = reserved_quantities(hourly, m, rules, valid_from.ceil("D"), drawdowns, booked, risk)
        spot = _guard(spot_offers(hourly, m, rules, demand, valid_from, res, booked, drawdowns, risk)
                      .assign(spot_expected_price=np.nan),
                      rules, anchor, parity=False)
        spot["expected_gpu_hours_sold"] = reprice_expected_sold(spot, spot["base_price"].to_numpy(float), demand)
        res = reserved_prices(res, spot, rules, demand)
        res = _guard(res, rules, anchor, parity=True)
        res["interruption_risk"] = 0.0  # reserved capacity is promised; reclaim risk is priced in the quantity
        res["expected_gpu_hours_sold"] = _expected_sold(res, demand)
        frames = [spot, res]
    kept = held_items(last, hold, valid_from)
    if len(kept) and market.resolved is not None:  # items of a sheet from before the catalogue have no class
        cls = market.resolved.set_index("gpu_model")["gpu_class"]
        kept["gpu_class"] = kept["gpu_class"].where(kept["gpu_class"].notna(), kept["gpu_model"].map(cls)) \
            if "gpu_class" in kept else kept["gpu_model"].map(cls)
    # a held pool with nothing left to keep (no last sheet, or all its items have started) says so
    withdrawn_holds = [p for p in hold if not len(kept) or p not in set(kept["pool"])]
    if withdrawn_holds:
        frames.append(pd.DataFrame({"pool": withdrawn_holds, "offered": False,
                                    "withdraw_reason": [
                                        (f"hold_without_last_sheet:{hold[p]}" if last is None or last.empty
                                         or p not in set(last["pool"]) else f"hold_no_future_items:{hold[p]}")
                                        for p in withdrawn_holds],
                                    "guardrails": [[f"hold_last:{hold[p]}"] for p in withdrawn_holds]}))
    parts = [f for f in frames if len(f)] + ([kept] if len(kept) else [])
    if not parts:
        return pd.DataFrame(columns=ITEM_COLS)
    items = pd.concat(parts, ignore_index=True)
    for c in ITEM_COLS:
        if c not in items:
            items[c] = np.nan
    items["discount_vs_reference"] = 1 - items["price_per_gpu_hour"] / items["reference_price"]
    items.loc[~items["offered"].astype(bool), ["price_per_gpu_hour", "discount_vs_reference"]] = np.nan
    return items[ITEM_COLS].reset_index(drop=True)
