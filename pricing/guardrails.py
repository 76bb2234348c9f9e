"""Guardrails applied to every item after the optimizer, in a fixed order, each one recorded.

1. max_change: stay within +-max_daily_change of the last published price of the same item.
2. floor / spot_parity: never under marginal cost; a reserved price never under spot's expected price.
3. ceiling: never above (1 - min_undercut) x the cheapest comparable reference.
Bounds (2, 3) override stability: a forced move beyond max_change says which bound forced it.
An item whose lower bound is above its ceiling cannot be sold at a defensible price: withdrawn.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

_EPS = 1e-9


def apply_guardrails(
    base: np.ndarray, floor: np.ndarray, ceiling: np.ndarray, last: np.ndarray,
    max_change: float, spot_parity: np.ndarray | None = None,
) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
    """Final prices, the guardrails that applied per item, and which items must be withdrawn.

    base, floor, ceiling, last (NaN = no last price), spot_parity (NaN/None = no parity bound).
    """
    base = np.asarray(base, float)
    floor = np.asarray(floor, float)
    ceiling = np.asarray(ceiling, float)
    last = np.asarray(last, float)
    parity = np.full_like(base, np.nan) if spot_parity is None else np.asarray(spot_parity, float)
    lower = np.fmax(floor, parity)

    has_last = np.isfinite(last) & (last > 0)
    lo_c = np.where(has_last, last * (1 - max_change), -np.inf)
    hi_c = np.where(has_last, last * (1 + max_change), np.inf)
    p = np.clip(base, lo_c, hi_c)
    f_change = np.abs(p - base) > _EPS * np.maximum(1.0, np.abs(base))

    f_floor = p < floor - _EPS
    f_parity = np.isfinite(parity) & (p < parity - _EPS) & (parity > floor)
    p = np.maximum(p, lower)
    f_ceiling = p > ceiling + _EPS
    p = np.minimum(p, ceiling)
    withdraw = ~(lower <= ceiling + _EPS) | ~np.isfinite(p)

    flags: list[list[str]] = []
    for i in range(len(p)):
        f = []
        if f_change[i]:
            f.append("max_change")
        if f_floor[i] and not f_parity[i]:
            f.append("floor")
        if f_parity[i]:
            f.append("spot_parity")
        if f_ceiling[i]:
            f.append("ceiling")
        flags.append(f)
    return p, flags, withdraw


FORCING = {"floor", "spot_parity", "ceiling"}


def guardrail_counts(items: pd.DataFrame) -> dict[str, int]:
    """How many items each guardrail touched (for the MLflow run)."""
    counts: dict[str, int] = {}
    for gs in items["guardrails"]:
        for g in gs:
            key = g.split(":", 1)[0]
            counts[key] = counts.get(key, 0) + 1
    return counts
