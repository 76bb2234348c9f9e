"""How far idle capacity has fallen within a window, historically: the guard on reserved offers.

A forecaster trained on a pool that was always idle cannot know the pool may fill up tomorrow;
the fleet's own history can. For every pool and every past origin hour we measure the drawdown
over the next d days: (the pool's lowest idle over the day before the origin - minimum idle in
the window) / capacity, pooled over all pools and per pool. A reserved offer may not exceed that
recent floor now - the (1 - level) quantile of the drawdown (the larger of pooled and own) x capacity. Terms the history is too short to measure (no complete window) cannot be offered.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MIN_OBSERVED = 0.75


@dataclass
class Drawdowns:
    """Sorted pooled drawdown samples per term (days), and each pool's last observed idle GPUs."""

    samples: dict[int, np.ndarray] = field(default_factory=dict)
    idle_now: pd.Series = field(default_factory=pd.Series)
    origins: dict[int, int] = field(default_factory=dict)  # origin hours with a complete window, per term
    own: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # each pool's own samples
    blocks: dict[int, np.ndarray] = field(default_factory=dict)  # spot: drawdown into a block starting L days out
    level_now: pd.Series = field(default_factory=pd.Series)      # each pool's newest observed idle
    min_origins: int = 48                                    # two days of origins before a term is trusted

    def quantile(self, days: int, level: np.ndarray) -> np.ndarray:
        """Drawdown share exceeded with probability `level` (NaN when the term was never observed)."""
        s = self.samples.get(days)
        level = np.asarray(level, float)
        if s is None or len(s) < 20 or self.origins.get(days, 0) < self.min_origins:
            return np.full(level.shape, np.nan)
        return np.quantile(s, np.clip(1 - level, 0, 1))

    def block_risk(self, pools: pd.Series, caps: np.ndarray, lead_days: np.ndarray, leased: np.ndarray) -> np.ndarray:
        """Historical P(idle dips below `leased` GPUs in a spot block starting `lead_days` out).

        pools, caps: (P,); lead_days, leased: (P, nb). NaN where history has no such lead."""
        now = pools.map(self.level_now).to_numpy(float)[:, None]
        x = (now - np.asarray(leased, float)) / np.asarray(caps, float)[:, None]  # drawdown that reclaims
        out = np.full(np.shape(leased), np.nan)
        for L in np.unique(lead_days):
            s = self.blocks.get(int(L))
            if s is None or len(s) < 20:
                continue
            m = lead_days == L
            out[m] = 1 - np.searchsorted(s, x[m], side="left") / len(s)
        return np.where(np.isfinite(now), out, np.nan)

    def own_quantile(self, days: int, pools: pd.Series, level: np.ndarray) -> np.ndarray:
        own = self.own.get(days, {})
        out = np.zeros(len(pools))
        for i, (p, lv) in enumerate(zip(pools, np.broadcast_to(level, (len(pools),)))):
            s = own.get(p)
            out[i] = np.quantile(s, np.clip(1 - lv, 0, 1)) if s is not None and len(s) else 0.0
        return out

    def cap_gpus(self, pools: pd.Series, caps: np.ndarray, days: int, level: np.ndarray) -> np.ndarray:
        """Most GPUs a d-day window can promise per pool at risk `level` (NaN: cannot say).

        The larger of the fleet's pooled drawdown and the pool's own: a pool that has emptied
        before is trusted less than the fleet, never more."""
        now = pools.map(self.idle_now).to_numpy(float)
        dd = np.fmax(self.quantile(days, level), self.own_quantile(days, pools, level))
        dd = np.where(np.isnan(self.quantile(days, level)), np.nan, dd)
        return np.floor(np.clip(now - dd * caps, 0, None) + 1e-9)


def measure(df: pd.DataFrame, terms_days: tuple[int, ...], stride_hours: int = 1, min_origins: int = 48,
            recent_hours: int = 24, block_hours: int = 6, spot_days: int = 7) -> Drawdowns:
    """Pooled drawdowns from a long frame unique_id, ds, y, gpus_total (y NaN = not observed)."""
    wide = df.pivot_table(index="ds", columns="unique_id", values="y", aggfunc="last", dropna=False)
    wide = wide.reindex(pd.date_range(wide.index.min(), wide.index.max(), freq="h"))
    caps = df.groupby("unique_id")["gpus_total"].max().reindex(wide.columns).to_numpy(float)
    y = wide.to_numpy(float)
    # the level a promise starts from: the pool's lowest idle over the last day, not its latest
    # reading (a pool that just freed up, or came back from an outage all idle, has not proven it)
    last = pd.DataFrame(y).rolling(recent_hours, min_periods=1).min().ffill().to_numpy()
    samples, origins, own = {}, {}, {}
    for d in terms_days:
        W = 24 * d
        if len(y) <= W:
            continue
        rev = pd.DataFrame(y[::-1])
        fmin = rev.rolling(W, min_periods=int(W * MIN_OBSERVED)).min().to_numpy()[::-1]  # min of y[t .. t+W-1]
        level = np.vstack([np.full((1, y.shape[1]), np.nan), last[:-1]])                  # idle known at origin t
        dd = (level - fmin) / caps
        dd = dd[: len(y) - W + 1 : stride_hours]
        ok = np.isfinite(dd)
        samples[d] = np.sort(np.clip(dd[ok], 0, 1))
        origins[d] = int(ok.any(axis=1).sum())
        own[d] = {str(p): np.clip(dd[ok[:, j], j], 0, 1) for j, p in enumerate(wide.columns)}
    # spot: from the newest reading at each origin to the minimum of a block starting L days later
    newest = pd.DataFrame(y).ffill().to_numpy()
    level = np.vstack([np.full((1, y.shape[1]), np.nan), newest[:-1]])
    bmin = pd.DataFrame(y[::-1]).rolling(block_hours, min_periods=max(1, int(block_hours * MIN_OBSERVED))).min()
    bmin = bmin.to_numpy()[::-1]  # min of y[t .. t+B-1]
    blocks = {}
    for L in range(spot_days + 1):
        off = 24 * L
        if len(y) <= off + block_hours:
            break
        dd = (level[: len(y) - off] - bmin[off:]) / caps
        v = dd[np.isfinite(dd)]
        blocks[L] = np.sort(v)
    # a pool watched for less than MIN_OBSERVED of the last day (an outage just ended) promises nothing yet
    seen = np.isfinite(y[-recent_hours:]).mean(axis=0)
    now = pd.Series(np.where(seen >= MIN_OBSERVED, last[-1], np.nan), index=wide.columns)
    return Drawdowns(samples=samples, idle_now=now, origins=origins, own=own, blocks=blocks,
                     level_now=pd.Series(newest[-1], index=wide.columns), min_origins=min_origins)
