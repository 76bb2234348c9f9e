"""Break probabilities of reserved terms and spot blocks at one pricing origin, from the window-risk model.

A d-day reserved promise of k GPUs holds when every sample of its d days has at least k idle.
Once the history holds enough finished d-day windows to calibrate on, the model reads the term
directly (its own window). Before that - a young fleet, a 30-day term - it predicts each day of
the term (a 1-day window at its own lead) and the term's break probability is
1 - prod(1 - p_day): exact if days were independent and an upper bound when they move together
(a pool that stayed full yesterday is more likely to stay full today, never less), so a term is
never sold on a looser risk than its days. Spot blocks are windows of their own (`block_hours`
long, at every lead of the spot horizon).

Offer sizing asks the inverse: the largest k whose break probability stays at or under a target.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.window_risk import Window, WindowRiskModel, largest_under

HOUR = pd.Timedelta(hours=1)


@dataclass
class CapacityRisk:
    """A fitted window-risk model and its predictions at `origin` for the days and blocks on sale."""

    model: WindowRiskModel
    pred: pd.DataFrame          # one row per pool x window (model.predict)
    origin: pd.Timestamp
    reserved_start: pd.Timestamp
    spot_start: pd.Timestamp
    block_hours: int

    @classmethod
    def fit(cls, series: pd.DataFrame, calendar: pd.DataFrame | None, origin: pd.Timestamp, reserved_start: pd.Timestamp,
            terms_days: tuple[int, ...], spot_start: pd.Timestamp, block_hours: int, spot_days: int,
            model: WindowRiskModel | None = None) -> "CapacityRisk":
        """Fit on history before `origin` (nothing later is read) and predict the windows on sale."""
        a = int((reserved_start - origin) / HOUR)
        b = int((spot_start - origin) / HOUR)
        windows = [Window(a + 24 * j, 24) for j in range(max(terms_days, default=0))]
        windows += [Window(a, 24 * d) for d in sorted(terms_days) if d > 1]
        windows += [Window(b + block_hours * j, block_hours) for j in range(spot_days * 24 // block_hours)]
        m = (model or WindowRiskModel()).fit(series, calendar, origin, windows)
        pred = m.predict(series, calendar, origin)
        return cls(m, pred, origin, reserved_start, spot_start, block_hours)

    @property
    def fitted(self) -> bool:
        return bool(getattr(self.model, "fitted_", False))

    def _days(self, pools: list[str], days: int) -> pd.DataFrame:
        a = int((self.reserved_start - self.origin) / HOUR)
        p = self.pred[(self.pred["length"] == 24) & (self.pred["lead"] >= a) & (self.pred["lead"] < a + 24 * days)]
        return p[p["unique_id"].isin(pools)]

    def direct(self, days: int) -> bool:
        """Whether the `days`-day term is read from its own window (enough finished ones to calibrate on)."""
        a = int((self.reserved_start - self.origin) / HOUR)
        return days == 1 or self.model.calibrated_on(24 * days, a)

    def term_break(self, pools: list[str], days: int, k: np.ndarray) -> np.ndarray:
        """P(a `days`-day promise of k GPUs from the reserved start breaks), per pool (NaN: cannot say)."""
        k = np.asarray(k, float)
        if days > 1 and self.direct(days):
            a = int((self.reserved_start - self.origin) / HOUR)
            p = self.pred[(self.pred["length"] == 24 * days) & (self.pred["lead"] == a)]
            p = p.set_index("unique_id").reindex(pools).reset_index()
            p["length"], p["lead"] = 24 * days, a
            return self.model.break_probability(p, k)
        p = self._days(pools, days)
        kk = p["unique_id"].map(dict(zip(pools, k))).to_numpy(float)
        r = self.model.break_probability(p, kk)
        log_hold = pd.Series(np.log1p(-np.clip(r, 0, 1 - 1e-12))).groupby(p["unique_id"].to_numpy()).sum(min_count=1)
        n = p.groupby("unique_id").size().reindex(pools).to_numpy()
        out = 1 - np.exp(log_hold.reindex(pools).to_numpy(float))
        return np.where((n == days) & np.isfinite(out), np.where(k <= 0, 0.0, out), np.nan)

    def term_largest(self, pools: list[str], caps: np.ndarray, days: int, target: np.ndarray) -> np.ndarray:
        """The most GPUs per pool whose `days`-day break probability stays at or under `target`."""
        target = np.broadcast_to(np.asarray(target, float), (len(pools),))
        return largest_under(lambda k: self.term_break(pools, days, k), np.nan_to_num(np.asarray(caps, float)), target)

    def _blocks(self, pools: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
        b = int((self.spot_start - self.origin) / HOUR)
        p = self.pred[(self.pred["length"] == self.block_hours) & (self.pred["lead"] >= b)]
        idx = pd.MultiIndex.from_product([pools, sorted(p["lead"].unique())], names=["unique_id", "lead"])
        p = p.set_index(["unique_id", "lead"]).reindex(idx).reset_index()
        p["length"] = self.block_hours
        return p, np.asarray(sorted(set(p["lead"])))

    def block_break(self, pools: list[str], k: np.ndarray) -> np.ndarray:
        """(pools, blocks) P(idle falls under k GPUs at some sample of the block)."""
        p, leads = self._blocks(pools)
        k = np.asarray(k, float)
        r = self.model.break_probability(p, k[:, :len(leads)].reshape(-1))
        return r.reshape(len(pools), len(leads))

    def block_largest(self, pools: list[str], caps: np.ndarray, target: float) -> np.ndarray:
        """(pools, blocks) the most GPUs a block can hold with interruption risk at or under `target`."""
        _, leads = self._blocks(pools)
        nb = len(leads)
        cap = np.repeat(np.nan_to_num(np.asarray(caps, float)), nb)
        flat = largest_under(lambda k: self.block_break(pools, k.reshape(len(pools), nb)).reshape(-1), cap,
                       np.full(len(cap), target))
        return flat.reshape(len(pools), nb)


def fit_capacity_risk(series: pd.DataFrame, calendar: pd.DataFrame | None, valid_from: pd.Timestamp, rules,
                      model: WindowRiskModel | None = None) -> CapacityRisk:
    """The risk a pricing pass at `valid_from` sells against: reserved from the next UTC midnight,
    spot from the next block boundary (the same windows pricing.optimizer offers)."""
    return CapacityRisk.fit(series, calendar, valid_from, valid_from.ceil("D"), tuple(rules.reserved_terms_days),
                            valid_from.ceil(f"{rules.block_hours}h"), rules.block_hours, rules.spot_days, model)
