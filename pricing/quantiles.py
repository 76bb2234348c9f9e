"""The forecast's quantile columns as a distribution: quantile function on a grid, CDF at a level.

The forecast gives seven quantiles per hour (q05..q95). Between them the quantile function is
linear; below q05 and above q95 the nearest segment's slope is extended, clipped to
[0, capacity]. Hours are treated as comonotone (one latent level u drives a whole block): idle
capacity moves in multi-hour steps, and the pricing backtest checks what this assumption costs.
"""
from __future__ import annotations

import numpy as np

from models.base import QCOLS, QUANTILES

LEVELS = np.asarray(QUANTILES)


def _knots(q: np.ndarray, cap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(levels, values) of the piecewise-linear quantile function incl. the 0 and 1 tails."""
    q = np.sort(np.clip(q, 0.0, cap[..., None]), axis=-1)
    lo = np.clip(q[..., :1] - (q[..., 1:2] - q[..., :1]) * LEVELS[0] / (LEVELS[1] - LEVELS[0]), 0, None)
    hi = np.minimum(q[..., -1:] + (q[..., -1:] - q[..., -2:-1]) * (1 - LEVELS[-1]) / (LEVELS[-1] - LEVELS[-2]),
                    cap[..., None])
    levels = np.concatenate([[0.0], LEVELS, [1.0]])
    return levels, np.concatenate([lo, q, hi], axis=-1)


def quantile_at(q: np.ndarray, cap: np.ndarray, u: np.ndarray | float) -> np.ndarray:
    """Quantile function at level(s) u for every row of q (..., 7) -> (..., len(u))."""
    levels, vals = _knots(np.asarray(q, float), np.asarray(cap, float))
    u = np.atleast_1d(np.asarray(u, float))
    idx = np.clip(np.searchsorted(levels, u, side="right") - 1, 0, len(levels) - 2)
    w = (u - levels[idx]) / (levels[idx + 1] - levels[idx])
    a, b = vals[..., idx], vals[..., idx + 1]
    # exact at both knots and wherever a == b (a*(1-w) + b*w is not: 48 -> 47.999..., a false reclaim risk)
    return np.where(w < 0.5, a + (b - a) * w, b - (b - a) * (1 - w))


def grid(n: int = 50) -> np.ndarray:
    """Mid-point levels (i + 0.5) / n: an equal-weight sample of the distribution."""
    return (np.arange(n) + 0.5) / n


def cdf_at(q: np.ndarray, cap: np.ndarray, k: np.ndarray, n: int = 400) -> np.ndarray:
    """P(idle < k) per row, from the quantile function on a fine grid (resolution 1/n)."""
    vals = quantile_at(q, cap, grid(n))
    return (vals < np.asarray(k, float)[..., None]).mean(axis=-1)


def qmatrix(frame, cols: list[str] = QCOLS) -> np.ndarray:
    return frame[cols].to_numpy(float)
