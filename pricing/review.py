"""What a pricing pass did, in the numbers a pricing analyst compares night over night.

Pure functions over the engine's items (pricing.engine.ITEM_COLS): offers and expected revenue
per product, which bound each guardrail really was (an optimum sitting on the ceiling counts as
the ceiling binding, though no clamp fired), what each override changed and by how much, and the
largest moves across distinct pools and products.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

PRODUCTS = ("spot", "reserved_1d", "reserved_7d", "reserved_30d")
GUARDRAILS = ("max_change", "floor", "spot_parity", "ceiling", "hold_last", "override", "override_clipped")
_TOL = 1e-6


def _at(price: pd.Series, bound: pd.Series) -> pd.Series:
    """Price equal to the bound (to a millionth of it)."""
    p, b = pd.to_numeric(price, errors="coerce"), pd.to_numeric(bound, errors="coerce")
    return ((p - b).abs() <= _TOL * b.abs().clip(lower=1.0)).fillna(False)


def term_ceiling(items: pd.DataFrame, term_discount: dict[int, float] | None) -> pd.Series:
    """The highest price an item may have: the ceiling (reference less the undercut) and, for a
    reserved term, less that term's discount too (the optimizer's upper bound)."""
    ceil = pd.to_numeric(items["ceiling"], errors="coerce").astype(float)
    if not term_discount or not len(items):
        return ceil
    days = (pd.to_numeric(items["hours"], errors="coerce") // 24).astype("Int64")
    disc = days.map(lambda d: term_discount.get(int(d), 0.0) if pd.notna(d) else 0.0).astype(float)
    reserved = items["product"].astype(str).str.startswith("reserved").to_numpy()
    return ceil * np.where(reserved, 1.0 - disc.to_numpy(float), 1.0)


def binding_counts(offered: pd.DataFrame, term_discount: dict[int, float] | None = None) -> dict[str, int]:
    """Items each guardrail bound: its clamp fired, or (floor, ceiling) the final price sits on it;
    a reserved price on its term's discounted ceiling counts as the ceiling too."""
    keys = [[str(x).split(":", 1)[0] for x in (g if isinstance(g, (list, tuple, np.ndarray)) else [])]
            for g in offered["guardrails"]] if len(offered) else []
    flagged = {g: pd.Series([g in k for k in keys], index=offered.index, dtype=bool) for g in GUARDRAILS}
    out = {g: int(s.sum()) for g, s in flagged.items()}
    if len(offered):
        for g in ("ceiling", "floor"):
            at = _at(offered["price_per_gpu_hour"], offered[g])
            if g == "ceiling":
                at = at | _at(offered["price_per_gpu_hour"], term_ceiling(offered, term_discount))
            out[g] = int((flagged[g] | at).sum())
    return out


def offer_metrics(items: pd.DataFrame, held_pools: int, overrides_log: pd.DataFrame | None,
                  diff_counts: dict[str, int], items_overridden: int = 0,
                  term_discount: dict[int, float] | None = None) -> dict[str, float]:
    """The night's offer in MLflow metric names (`items.offered.spot`, `revenue.expected`, ...).

    Expected revenue is what the demand model expects to sell at the published prices
    (`expected_gpu_hours_sold` x price); reserved items that expect no sale count zero."""
    offered = items[items["offered"].astype(bool)] if len(items) else items
    gh = offered["gpus_offered"].astype(float) * offered["hours"].astype(float) if len(offered) else pd.Series(dtype=float)
    rev = (pd.to_numeric(offered["expected_gpu_hours_sold"], errors="coerce").fillna(0.0)
           * offered["price_per_gpu_hour"].astype(float)) if len(offered) else pd.Series(dtype=float)
    m: dict[str, float] = {
        "items.offered": float(len(offered)),
        "items.withdrawn": float((~items["offered"].astype(bool)).sum()) if len(items) else 0.0,
        "pools.offered": float(offered["pool"].nunique()) if len(offered) else 0.0,
        "pools.held": float(held_pools),
        "gpu_hours.offered": float(gh.sum()),
        "revenue.expected": float(rev.sum()),
        "discount.mean": float(offered["discount_vs_reference"].mean()) if len(offered) else 0.0,
    }
    present = set(offered["product"]) if len(offered) else set()
    for prod in [x for x in PRODUCTS if x in present or x != "reserved_30d"]:  # 30-day only where sold
        sel = (offered["product"] == prod).to_numpy(bool) if len(offered) else np.zeros(0, bool)
        m[f"items.offered.{prod}"] = float(sel.sum())
        m[f"gpu_hours.offered.{prod}"] = float(gh[sel].sum()) if len(offered) else 0.0
        m[f"revenue.expected.{prod}"] = float(rev[sel].sum()) if len(offered) else 0.0
    m["revenue.expected_spot"] = m.get("revenue.expected.spot", 0.0)  # the name earlier runs used
    m.update({f"guardrail.{k}": float(v) for k, v in binding_counts(offered, term_discount).items()})
    log = overrides_log if overrides_log is not None else pd.DataFrame()
    m["overrides.entries"] = float(len(log))
    m["overrides.items_changed"] = float(items_overridden)
    m.update({f"diff.{k}": float(v) for k, v in diff_counts.items()})
    return m


def override_effects(before: pd.DataFrame, after: pd.DataFrame, log: pd.DataFrame | None,
                     max_change: float, trace: list[pd.DataFrame] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Per override (in file order): the items it changed that are on the final sheet, by how much
    that entry itself moved them, where they ended against the last published price, and a warning
    for each entry that pushed prices past the daily cap (overrides are deliberate, so they may;
    the reviewer must see that they did).

    `trace` is what pricing.overrides.apply_overrides recorded: each entry's own before/after, so
    when two entries touch one item each is credited with its own step, and an item a later hold
    replaced counts for the hold only."""
    cols = ["override", "pool", "product", "action", "reason", "items_changed", "change_min", "change_max",
            "vs_last_min", "vs_last_max", "past_daily_cap"]
    if log is None or log.empty:
        return pd.DataFrame(columns=cols), []
    key = ["pool", "product", "start"]
    fin = after[after["offered"].astype(bool)].copy()
    fin["_held"] = fin["guardrails"].map(
        lambda g: any(str(x).startswith("override:hold:") for x in g) if isinstance(g, (list, tuple, np.ndarray)) else False)
    fin = keyed(fin[key + ["price_per_gpu_hour", "last_price", "_held"]]).drop_duplicates(key)
    steps = keyed(pd.concat(trace, ignore_index=True)) if trace else pd.DataFrame(columns=["override", *key, "before", "after"])
    base = keyed(before[before["offered"].astype(bool)][key + ["price_per_gpu_hour"]]).drop_duplicates(key)
    rows, warnings = [], []
    for n, o in enumerate(log.to_dict("records"), start=1):
        st = steps[steps["override"] == n].merge(fin, on=key, how="inner")
        if o["action"] == "hold":  # the kept items, against what the optimizer would have sold
            st = st[st["_held"]].merge(base.rename(columns={"price_per_gpu_hour": "_opt"}), on=key, how="left")
            st["before"] = st["_opt"]
        else:  # its own real changes that reached the sheet (not replaced by a later hold)
            st = st[~st["_held"] & ((st["after"] - st["before"]).abs() > 1e-9)]
        b, a = st["before"].astype(float), st["after"].astype(float)
        last = pd.to_numeric(st["last_price"], errors="coerce").astype(float)
        final = st["price_per_gpu_hour"].astype(float)
        ch = (a / b - 1).replace([np.inf, -np.inf], np.nan)
        vs = (final / last - 1).replace([np.inf, -np.inf], np.nan)
        pushed = (a / last - 1).abs() > (b / last - 1).abs() + 1e-12  # this entry moved it away from the last price
        past_mask = (vs.abs() > max_change + 1e-9) & (pushed if o["action"] != "hold" else False)
        past = int(past_mask.sum())
        rows.append({"override": n, "pool": o["pool"], "product": o["product"], "action": o["action"], "reason": o["reason"],
                     "items_changed": len(st),
                     "change_min": ch.min() if ch.notna().any() else np.nan,
                     "change_max": ch.max() if ch.notna().any() else np.nan,
                     "vs_last_min": vs.min() if vs.notna().any() else np.nan,
                     "vs_last_max": vs.max() if vs.notna().any() else np.nan,
                     "past_daily_cap": past})
        if past:
            worst = vs[past_mask].loc[vs[past_mask].abs().idxmax()]
            warnings.append(f"override #{n} ({o['pool']} / {o['product']}, {o['action']}: {o['reason']}) moves {past} "
                            f"item(s) by up to {worst:+.0%} against the last sheet, past the {max_change:.0%} daily cap")
    return pd.DataFrame(rows, columns=cols), warnings


def keyed(df: pd.DataFrame) -> pd.DataFrame:
    """`start` as datetime64[ns, UTC]: items from the engine and from a stored sheet carry different
    units, and merging on mixed units fails."""
    if "start" not in df or not len(df):
        return df
    return df.assign(start=pd.to_datetime(df["start"], utc=True).astype("datetime64[ns, UTC]"))


def overridden_items(after: pd.DataFrame, trace: list[pd.DataFrame] | None) -> int:
    """Distinct items on the final sheet whose price an override set (a changed price or a hold)."""
    if not trace:
        return 0
    key = ["pool", "product", "start"]
    steps = keyed(pd.concat(trace, ignore_index=True))
    real = steps[steps["before"].isna() | ((steps["after"] - steps["before"]).abs() > 1e-9)]
    fin = keyed(after[after["offered"].astype(bool)][key]).drop_duplicates()
    return int(len(real[key].drop_duplicates().merge(fin, on=key, how="inner")))


def largest_moves(diff: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The n largest price moves, one per pool and product (a pool whose every block moved shows
    once), spread across pools first: each pool's largest move, then the next pairs by size."""
    if diff is None or diff.empty or "change" not in diff:
        return pd.DataFrame(columns=getattr(diff, "columns", []))
    d = diff.assign(_abs=diff["change"].abs()).sort_values("_abs", ascending=False)
    pairs = d.drop_duplicates(["pool", "product"])
    first = pairs.drop_duplicates("pool")
    rest = pairs.drop(first.index)
    return pd.concat([first, rest]).head(n).drop(columns="_abs").reset_index(drop=True)


def rounded(df: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """A table for people: floats to `digits` decimals (prices in USD to a hundredth of a cent)."""
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].round(digits)
    return out
