"""Per-pool findings of a pricing pass: what each pool sold, or why it could not, and what to do.

Derived from the candidate items (`pricing.engine.price_fleet`) and the market: a withdrawn
item's reason becomes a cause an operator can act on, with the numbers behind it:

- `unknown_gpu`: the telemetry GPU name is not in the catalogue (map it in [pricing.gpu_aliases]);
- `no_reference`: the class is known but no AWS/Azure price compares with it (import references);
- `not_competitive`: the cost floor is above the ceiling under the reference (per product class);
- `no_capacity` / `forecast_too_short`: nothing idle to sell / forecast too short, for a product
  class in which the pool sold nothing at all;
- `held`: the pool kept its last prices (stale telemetry, a bad forecast);
- `priced`: what the pool offers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pricing.costs import describe_floor
from pricing.optimizer import Market

FINDING_COLUMNS = ["pool", "gpu_model", "gpu_class", "cause", "product", "detail", "action"]
SELLABLE = ("priced",)


def _cls(product: str) -> str:
    return "spot" if product == "spot" else "reserved"


def pool_findings(items: pd.DataFrame, market: Market, min_undercut: float, usd_per_kwh: float, pue: float,
                  alias_file: str = "data/gpu_aliases.csv") -> pd.DataFrame:
    """One row per (pool, cause[, product class]); every pool of the market has at least one."""
    pools = market.pools.set_index("pool")
    resolved = market.resolved.set_index("gpu_model") if market.resolved is not None else None
    costs = market.costs.set_index("gpu_model") if market.costs is not None else None
    items = items.copy()
    if len(items):
        items["offered"] = items["offered"].fillna(False).astype(bool)
        items["klass"] = items["product"].fillna("").map(_cls)
    rows: list[dict] = []
    by_pool = dict(tuple(items.groupby("pool", sort=False))) if len(items) else {}  # one pass, not one per pool
    empty = items.iloc[0:0]
    for pool, p in pools.iterrows():
        g = by_pool.get(pool, empty)
        model, gcls = p["gpu_model"], p.get("gpu_class")
        gcls = gcls if isinstance(gcls, str) else None
        base = {"pool": pool, "gpu_model": model, "gpu_class": gcls, "product": None}
        if gcls is None:
            sug = resolved.loc[model, "suggestion"] if resolved is not None and model in resolved.index else None
            rows.append({**base, "cause": "unknown_gpu",
                         "detail": f"GPU name {model!r} is not in the GPU catalogue"
                                   + (f" (closest known spelling is a {sug}: check before mapping)" if isinstance(sug, str) else ""),
                         "action": f'map it in idlecap.toml: [pricing.gpu_aliases] "{model}" = "<class>" '
                                   f"(classes: `idlecap gpus`), or add the spelling to {alias_file}"})
            continue
        offered = g[g["offered"]] if len(g) else g
        if len(offered):
            prods = sorted(offered["product"].unique(), key=lambda x: (x != "spot", len(x), x))
            rows.append({**base, "cause": "priced",
                         "detail": f"{len(offered)} item(s) offered ({', '.join(prods)}), "
                                   f"{float((offered['gpus_offered'] * offered['hours']).sum()):,.0f} GPU-hours",
                         "action": None})
        held = [x for x in g.get("withdraw_reason", pd.Series(dtype=object)).dropna().unique()
                if str(x).startswith("hold")] if len(g) else []
        hold_flags = [f for gl in offered.get("guardrails", []) for f in (gl if isinstance(gl, (list, tuple)) else [])
                      if str(f).startswith("hold_last:")] if len(offered) else []
        for reason in sorted(set(held) | {f.split(":", 1)[1] for f in hold_flags}):
            rows.append({**base, "cause": "held", "detail": f"kept its last prices or sold nothing: {reason}",
                         "action": "see the night's summary (stale telemetry or a failed forecast check)"})
        for klass in ("spot", "reserved"):
            k = g[(g["klass"] == klass) & ~g["offered"]] if len(g) else g
            sold_any = len(offered) and (offered["klass"] == klass).any()
            reasons = set(k["withdraw_reason"].dropna()) if len(k) else set()
            if "no_reference" in reasons:
                refs = resolved.loc[model, "reference_classes"] if resolved is not None else []
                rows.append({**base, "product": klass, "cause": "no_reference",
                             "detail": f"{klass}: no AWS/Azure {klass} price for {gcls} "
                                       f"(compared with {', '.join(refs) or gcls}) among the references in force",
                             "action": "import current references (`idlecap references import`), widen "
                                       "[pricing] providers / reference_regions, or fix the class's reference_classes"})
            if "floor_above_ceiling" in reasons and not sold_any:
                rows.append({**base, "product": klass, "cause": "not_competitive",
                             "detail": _not_competitive(k[k["withdraw_reason"] == "floor_above_ceiling"], klass, gcls,
                                                        costs.loc[model] if costs is not None else None,
                                                        min_undercut, usd_per_kwh, pue),
                             "action": f"if the cost is wrong, set [pricing.costs.{gcls}]; otherwise {klass} "
                                       "cannot be sold above cost against today's references"})
            # spot gets what reserved did not promise: an empty spot class next to sold reserved terms is no finding
            covered = klass == "spot" and len(offered) > 0
            for r, cause in (("no_capacity", "no_capacity"), ("forecast_too_short", "forecast_too_short")):
                if r in reasons and not sold_any and not covered and not (reasons & {"no_reference", "floor_above_ceiling"}):
                    detail, action = _no_capacity(k, klass, float(p.get("gpus_total", np.nan))) \
                        if cause == "no_capacity" else (f"{klass}: the forecast does not cover the offer window",
                                                        "more telemetry history is needed for a forecast this long")
                    rows.append({**base, "product": klass, "cause": cause, "detail": detail, "action": action})
    return pd.DataFrame(rows, columns=FINDING_COLUMNS)


def _no_capacity(k: pd.DataFrame, klass: str, cap: float) -> tuple[str, str]:
    """Why nothing was offered although the pool is priced: no idle GPUs, or none safe to promise."""
    if klass == "spot":
        idle = pd.to_numeric(k.get("expected_idle_gpus", pd.Series(dtype=float)), errors="coerce")
        mean = f"{np.nanmean(idle):.1f}" if np.isfinite(idle).any() else "?"
        busy = np.isfinite(idle).any() and np.nanmean(idle) < 0.5
        if busy:
            return (f"spot: no idle GPUs to sell (forecast idle {mean} of {cap:,.0f} on average over the spot days)",
                    "nothing to configure: training keeps this pool busy")
        return (f"spot: no block is idle enough at its offer quantile (forecast idle {mean} of {cap:,.0f} on average, "
                "but the low quantile of every block's minimum is 0)",
                "nothing to configure, unless more interruption risk is acceptable ([pricing] spot_offer_quantile)")
    wmq = pd.to_numeric(k.get("window_min_quantile", pd.Series(dtype=float)), errors="coerce")
    lvl = pd.to_numeric(k.get("newsvendor_level", pd.Series(dtype=float)), errors="coerce")
    best = f"{np.nanmax(wmq):.0f}" if np.isfinite(wmq).any() else "?"
    level = f" at the {np.nanmax(lvl):.1%} level" if np.isfinite(lvl).any() else ""
    return (f"reserved: no GPU is safe to promise for a whole term (forecast window minimum{level}: {best} of "
            f"{cap:,.0f} GPUs)", "nothing to configure here: reserved terms are sized by the window-risk rules")


def _not_competitive(k: pd.DataFrame, klass: str, gcls: str, cost: pd.Series | None, min_undercut: float,
                     usd_per_kwh: float, pue: float) -> str:
    """`spot: not competitive at cost: floor $1.07/GPU-h (...) above the ceiling $0.74 = 90% of aws ...`."""
    r = k.sort_values("ceiling", ascending=False).iloc[0]
    floor = describe_floor(cost, usd_per_kwh, pue) if cost is not None and np.isfinite(cost["floor"]) \
        else f"${r['floor']:.2f}/GPU-h"
    ref = (f"{r['reference_provider']} {r['reference_sku']} {r['reference_product']} {r['reference_region']} "
           f"${float(r.get('reference_list_price', r['reference_price'])):.2f}")
    factor = float(r.get("performance_factor", 1.0)) if pd.notna(r.get("performance_factor", np.nan)) else 1.0
    if abs(factor - 1) > 1e-9:
        ref += f" x {factor:.2f} ({gcls} vs {r.get('reference_gpu_model')})"
    ceiling = float(r["ceiling"]) if pd.notna(r["ceiling"]) else (1 - min_undercut) * float(r["reference_price"])
    terms = ""
    if klass == "reserved":
        terms = f" (best term {r['product']}: term discount applied)"
    return (f"{klass}: not competitive at cost: floor {floor} is above the ceiling ${ceiling:.2f} = "
            f"{1 - min_undercut:.0%} of {ref}{terms}")


def explain(findings: pd.DataFrame, limit: int = 20) -> list[str]:
    """One line per (pool, cause) that stops a sale: `pool: detail. Fix: action`."""
    bad = findings[~findings["cause"].isin(SELLABLE)]
    lines = [f"{r.pool}: {r.detail}" + (f". Fix: {r.action}" if isinstance(r.action, str) and r.action else "")
             for r in bad.itertuples(index=False)]
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more (`idlecap status` lists them all)"]
    return lines


_GROUP_LABELS = {
    ("unknown_gpu", None): ("GPU names are not in the GPU catalogue",
                            'map each in idlecap.toml: [pricing.gpu_aliases] "<name>" = "<class>" (`idlecap gpus`)'),
    ("no_reference", "spot"): ("have no AWS/Azure spot price to compare with", None),
    ("no_reference", "reserved"): ("have no AWS/Azure on-demand or reserved price to compare with", None),
    ("not_competitive", "spot"): ("cost more than the spot ceiling (floor above 90% of the reference)", None),
    ("not_competitive", "reserved"): ("cost more than the reserved ceiling", None),
    ("no_capacity", "spot"): ("have no spot block idle enough to sell at the offer quantile",
                              "nothing to configure, unless more interruption risk is acceptable "
                              "([pricing] spot_offer_quantile)"),
    ("no_capacity", "reserved"): ("have no GPU safe to promise for a whole reserved term", None),
}


def explain_grouped(findings: pd.DataFrame, per_pool_up_to: int = 8) -> list[str]:
    """Few lines for many pools: per pool when there are few, else one line per cause and product."""
    bad = findings[~findings["cause"].isin(SELLABLE)]
    if len(bad) <= per_pool_up_to:
        return explain(findings)
    lines = []
    for (cause, product), g in bad.groupby(["cause", bad["product"].fillna("")], sort=False):
        pools = list(dict.fromkeys(g["pool"]))
        names = ", ".join(pools[:6]) + (f" and {len(pools) - 6} more" if len(pools) > 6 else "")
        label, action = _GROUP_LABELS.get((cause, product or None), (cause.replace("_", " "), None))
        if cause == "unknown_gpu":
            label += ": " + ", ".join(repr(m) for m in dict.fromkeys(g["gpu_model"]))
        if len(pools) == 1:
            r = g.iloc[0]
            lines.append(f"{r.pool}: {r.detail}" + (f". Fix: {r.action}" if isinstance(r.action, str) else ""))
            continue
        if action is None and g["action"].notna().any():
            action = g["action"].dropna().iloc[0]
        lines.append(f"{len(pools)} pools ({names}) {label}" + (f". Fix: {action}" if action else ""))
    return lines
