"""Pricing overrides: the pricing team's hand on the next publish, per pool and product.

A TOML file of `[[override]]` entries, each naming a `pool` and a `product` (either may be "*")
and exactly one action:

    fixed = 1.10           # this price per GPU-hour
    min = 0.80 / max = 2.0 # keep the price inside these (either or both)
    hold = true            # keep the last published items (prices and GPUs) unchanged

plus a `reason` (required; it is kept in the sheet's guardrails, which internal API keys see, and in
the MLflow run; customers see the price, never the note). Cost floor and reference ceiling still bind: an override can never sell under cost
or above the undercut promise; when one of them wins, the item says so (`override_clipped`).
Later entries win over earlier ones for the same item, except that a hold is final.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


class OverrideError(ValueError):
    """The overrides file is malformed; the message names the entry and the problem."""


@dataclass(frozen=True)
class Override:
    pool: str
    product: str
    reason: str
    fixed: float | None = None
    min: float | None = None
    max: float | None = None
    hold: bool = False

    @property
    def action(self) -> str:
        return "hold" if self.hold else "fixed" if self.fixed is not None else "range"

    def matches(self, pool: pd.Series, product: pd.Series) -> pd.Series:
        return ((pool == self.pool) | (self.pool == "*")) & ((product == self.product) | (self.product == "*"))


def load_overrides(path: Path | None) -> list[Override]:
    """The file's overrides; a missing file (or None) means none."""
    if path is None or not Path(path).exists():
        return []
    try:
        raw = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise OverrideError(f"{path}: not valid TOML ({exc})") from exc
    unknown_top = set(raw) - {"override"}
    if unknown_top:
        raise OverrideError(f"{path}: unknown top-level keys {sorted(unknown_top)}; use [[override]] entries")
    entries = raw.get("override", [])
    if not isinstance(entries, list):
        raise OverrideError(f"{path}: entries must be [[override]] tables (an array), not [override]")
    out = []
    for n, e in enumerate(entries, start=1):
        where = f"{path}: override #{n}"
        if not isinstance(e, dict):
            raise OverrideError(f"{where}: each entry must be a [[override]] table, got {e!r}"[:300])
        unknown = set(e) - {"pool", "product", "reason", "fixed", "min", "max", "hold"}
        if unknown:
            raise OverrideError(f"{where}: unknown keys {sorted(unknown)}")
        for k in ("pool", "product", "reason"):
            if not isinstance(e.get(k), str) or not e[k].strip():
                raise OverrideError(f"{where}: `{k}` is required (a non-empty string)")
        nums = {}
        for k in ("fixed", "min", "max"):
            if k in e:
                if not isinstance(e[k], (int, float)) or isinstance(e[k], bool) or not np.isfinite(e[k]) or e[k] <= 0:
                    raise OverrideError(f"{where}: `{k}` must be a positive number of USD per GPU-hour, got {e[k]!r}")
                nums[k] = float(e[k])
        hold = e.get("hold", False)
        if not isinstance(hold, bool):
            raise OverrideError(f"{where}: `hold` must be true or false")
        actions = ("fixed" in nums) + ("min" in nums or "max" in nums) + bool(hold)
        if actions != 1:
            raise OverrideError(f"{where}: give exactly one of fixed, min/max or hold = true")
        if "min" in nums and "max" in nums and nums["min"] > nums["max"]:
            raise OverrideError(f"{where}: min {nums['min']} is above max {nums['max']}")
        out.append(Override(pool=e["pool"], product=e["product"], reason=e["reason"].strip(), hold=hold, **nums))
    return out


def apply_overrides(items: pd.DataFrame, overrides: list[Override], last: pd.DataFrame | None,
                    valid_from: pd.Timestamp, trace: list[pd.DataFrame] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items with the overrides applied, and a log (one row per override: items touched, action).

    `items` are pricing.engine candidates (ITEM_COLS); `last` the last published items. `trace`,
    when given, receives one frame per override (`override` number, pool, product, start, the
    price `before` and `after` that step) so a reviewer sees what each entry did itself when
    several touch the same item (pricing.review.override_effects)."""
    items = items.copy()
    items["guardrails"] = [list(g) if isinstance(g, (list, tuple, np.ndarray)) else [] for g in items["guardrails"]]
    log = []
    for num, o in enumerate(overrides, start=1):
        held = pd.Series([any(str(x).startswith("override:hold:") for x in g) for g in items["guardrails"]],
                         index=items.index, dtype=bool)
        hit = o.matches(items["pool"], items["product"]) & items["offered"].astype(bool) & ~held  # a hold is final
        tag = f"override:{o.action}:{o.reason}"
        if o.hold:
            kept = pd.DataFrame()
            if last is not None and len(last):
                kept = last[o.matches(last["pool"], last["product"]) & (last["start"] >= valid_from)].copy()
            hit_any = o.matches(items["pool"], items["product"])
            n = int(hit_any.sum())
            items = items[~hit_any]
            if trace is not None:
                trace.append(pd.DataFrame({"override": num, "pool": kept.get("pool", pd.Series(dtype=object)),
                                           "product": kept.get("product", pd.Series(dtype=object)),
                                           "start": kept.get("start", pd.Series(dtype=object)), "before": np.nan,
                                           "after": kept.get("price_per_gpu_hour", pd.Series(dtype=float))}))
            if len(kept):
                kept["guardrails"] = [[*[x for x in g if not str(x).startswith("override:")], tag] for g in kept["guardrails"]]
                kept["offered"], kept["withdraw_reason"] = True, ""
                kept["last_price"] = kept["base_price"] = kept["price_per_gpu_hour"]
                items = pd.concat([items, kept.reindex(columns=items.columns)], ignore_index=True)
            log.append({"pool": o.pool, "product": o.product, "action": "hold", "reason": o.reason,
                        "items_replaced": n, "items_kept_from_last_sheet": len(kept)})
            continue
        idx = items.index[hit]
        p = items.loc[idx, "price_per_gpu_hour"].to_numpy(float)
        want = np.full(len(idx), o.fixed) if o.fixed is not None else np.clip(
            p, o.min if o.min is not None else -np.inf, o.max if o.max is not None else np.inf)
        lo, hi = items.loc[idx, "floor"].to_numpy(float), items.loc[idx, "ceiling"].to_numpy(float)
        final = np.minimum(np.maximum(want, np.nan_to_num(lo, nan=-np.inf)), np.nan_to_num(hi, nan=np.inf))
        clipped = np.abs(final - want) > 1e-9
        changed = np.abs(final - p) > 1e-9
        for i, j in enumerate(idx):
            if changed[i] or o.fixed is not None:
                items.at[j, "guardrails"] = [*items.at[j, "guardrails"], tag] + (["override_clipped"] if clipped[i] else [])
        items.loc[idx, "price_per_gpu_hour"] = final
        if trace is not None:
            trace.append(pd.DataFrame({"override": num, "pool": items.loc[idx, "pool"].to_numpy(),
                                       "product": items.loc[idx, "product"].to_numpy(),
                                       "start": items.loc[idx, "start"].to_numpy(), "before": p, "after": final}))
        log.append({"pool": o.pool, "product": o.product, "action": o.action, "reason": o.reason,
                    "items_matched": len(idx), "items_changed": int(changed.sum()), "items_clipped": int(clipped.sum())})
    items["discount_vs_reference"] = 1 - items["price_per_gpu_hour"] / items["reference_price"]
    return items.reset_index(drop=True), pd.DataFrame(log)
