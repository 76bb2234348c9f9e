"""Constant-elasticity demand per gpu_model x product, refit from bookings when there are enough.

GPUs wanted at price p = share x capacity x (p / reference)^-elasticity: `share` is the part of
the pool customers would take at the cheapest comparable reference price. Fitting is a Poisson
GLM (log link, offset log capacity) on published items and what was booked from them, so items
with no booking count as zero demand instead of breaking a log-log regression. Sold-out items
are censored (demand was at least what was offered) and are left out of the fit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pricing.rules import DemandPrior

ELASTICITY_RANGE = (0.3, 8.0)


@dataclass(frozen=True)
class DemandCurve:
    elasticity: float
    share_at_reference: float
    source: str = "prior"        # prior | fit
    n_items: int = 0

    def gpus(self, price: np.ndarray, reference: np.ndarray, capacity: np.ndarray) -> np.ndarray:
        """GPUs demanded at `price` (vectorised)."""
        ratio = np.asarray(price, float) / np.asarray(reference, float)
        return self.share_at_reference * np.asarray(capacity, float) * ratio ** (-self.elasticity)

    def clearing_price(self, gpus: np.ndarray, reference: np.ndarray, capacity: np.ndarray) -> np.ndarray:
        """The price at which demand equals `gpus` (inf when gpus is 0)."""
        with np.errstate(divide="ignore"):
            x = np.asarray(gpus, float) / (self.share_at_reference * np.asarray(capacity, float))
            return np.asarray(reference, float) * x ** (-1.0 / self.elasticity)


def fit_curve(obs: pd.DataFrame, prior: DemandPrior, min_items: int = 30) -> DemandCurve:
    """Fit one curve from item observations, or keep the prior when the data cannot identify it.

    obs: price_per_gpu_hour, reference_price, capacity, gpus_offered, gpus_booked (one row per item).
    """
    import statsmodels.api as sm

    o = obs[(obs["gpus_booked"] < obs["gpus_offered"]) & (obs["capacity"] > 0)
            & (obs["price_per_gpu_hour"] > 0) & (obs["reference_price"] > 0)]
    n = len(o)
    x = np.log(o["price_per_gpu_hour"].to_numpy(float) / o["reference_price"].to_numpy(float))
    if n < min_items or np.std(x) < 0.01:
        return DemandCurve(prior.elasticity, prior.share_at_reference, "prior", n)
    X = sm.add_constant(x, has_constant="add")
    try:
        res = sm.GLM(o["gpus_booked"].to_numpy(float), X, family=sm.families.Poisson(),
                     offset=np.log(o["capacity"].to_numpy(float))).fit()
    except Exception:  # noqa: BLE001 - a failed fit keeps the prior, never stops pricing
        return DemandCurve(prior.elasticity, prior.share_at_reference, "prior", n)
    a, b = (float(v) for v in res.params)
    if not (np.isfinite(a) and np.isfinite(b)):
        return DemandCurve(prior.elasticity, prior.share_at_reference, "prior", n)
    e = float(np.clip(-b, *ELASTICITY_RANGE))
    return DemandCurve(e, float(min(np.exp(a), 10.0)), "fit", n)


class DemandModel:
    """Curves per (gpu_model, product); the prior for every pair without a fit."""

    def __init__(self, prior: DemandPrior = DemandPrior(), min_items: int = 30,
                 product_priors: dict[str, DemandPrior] | None = None) -> None:
        self.prior = prior
        self.min_items = min_items
        self.product_priors = product_priors

    def _prior(self, product: str) -> DemandPrior:
        return (self.product_priors or {}).get(product, self.prior)

    def fit(self, obs: pd.DataFrame | None) -> DemandModel:
        """obs: gpu_model, product + the fit_curve columns (see `booking_observations`)."""
        self.curves_: dict[tuple[str, str], DemandCurve] = {}
        if obs is not None and len(obs):
            for (g, p), grp in obs.groupby(["gpu_model", "product"], sort=True):
                self.curves_[(str(g), str(p))] = fit_curve(grp, self._prior(str(p)), self.min_items)
        return self

    def curve(self, gpu_model: str, product: str) -> DemandCurve:
        c = getattr(self, "curves_", {}).get((gpu_model, product))
        prior = self._prior(product)
        return c or DemandCurve(prior.elasticity, prior.share_at_reference)

    def table(self, pairs: list[tuple[str, str]] | None = None) -> pd.DataFrame:
        """What was fitted (for the warehouse); with `pairs` (gpu_model, product), the curve each one
        was priced with, the prior included (for the MLflow log: never an empty table)."""
        fitted = getattr(self, "curves_", {})
        keys = sorted(fitted) if pairs is None else sorted(set(pairs) | set(fitted))
        rows = [{"gpu_model": g, "product": p, **self.curve(g, p).__dict__} for g, p in keys]
        if pairs is not None:
            for r in rows:
                r["source"] = "fit" if r["source"] == "fit" else "prior (too few bookings to fit)"
        return pd.DataFrame(rows, columns=["gpu_model", "product", "elasticity", "share_at_reference", "source", "n_items"])
