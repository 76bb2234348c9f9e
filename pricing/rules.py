"""The pricing rules in one frozen object (built from settings by pipelines/, passed down).

Defaults follow DESIGN.md "Pricing rules"; every one is configurable under `[pricing]`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PRODUCTS = ("spot", "reserved_1d", "reserved_7d", "reserved_30d")


@dataclass(frozen=True)
class CostModel:
    """Marginal cost of one GPU-hour: power (incl. cooling via PUE) + amortization + overhead."""

    power_kw: float = 0.4
    amortization_usd_per_gpu_hour: float = 0.0
    overhead_usd_per_gpu_hour: float = 0.05

    def floor(self, usd_per_kwh: float, pue: float) -> float:
        return self.power_kw * pue * usd_per_kwh + self.amortization_usd_per_gpu_hour + self.overhead_usd_per_gpu_hour


@dataclass(frozen=True)
class DemandPrior:
    """Constant-elasticity demand: GPUs wanted = share x capacity x (price / reference)^-elasticity."""

    elasticity: float = 2.0
    share_at_reference: float = 0.25


@dataclass(frozen=True)
class PricingRules:
    min_undercut: float = 0.10             # ceiling = (1 - min_undercut) x cheapest comparable reference
    max_daily_change: float = 0.15         # vs the last published price of the same item
    block_hours: int = 6                   # spot lease blocks (UTC-aligned)
    spot_days: int = 7                     # spot blocks over the next N days
    spot_offer_quantile: float = 0.20      # spot GPUs = this quantile of the block's min idle, minus reserved
    reserved_terms_days: tuple[int, ...] = (1, 7, 30)
    term_discount: dict[int, float] = field(default_factory=lambda: {1: 0.0, 7: 0.05, 30: 0.12})
    reclaim_penalty_multiple: float = 20.0  # cost of reclaiming one reserved GPU-hour, in units of its price
    reserved_max_quantile: float = 0.10    # never offer more than this quantile of the window minimum
    reserved_break_target: float = 0.05    # per-lease break probability a reserved offer may carry (risk model)
    spot_risk_aversion: float = 1.0        # a block with interruption risk r is worth (1 - a r) of a sure hour
    spot_reference_risk: float = 0.05      # the interruption risk customers already accept at the reference (AWS spot)
    min_gpus: int = 1                      # smaller offers are withdrawn
    valid_hours: int = 24                  # a sheet is valid this long after valid_from
    stale_after_hours: float = 6.0         # newest telemetry older than this (vs as_of) holds the last sheet
    pool_stale_hours: float = 6.0          # a pool this far behind the newest telemetry holds its last prices
    usd_per_kwh: float = 0.12
    pue: float = 1.3
    price_grid: int = 120                  # candidate spot prices between floor and ceiling (log-spaced)

    def __post_init__(self) -> None:
        if not 0 <= self.min_undercut < 1:
            raise ValueError("min_undercut must be in [0, 1)")
        if not 0 < self.max_daily_change < 1:
            raise ValueError("max_daily_change must be in (0, 1)")
        if 24 % self.block_hours:
            raise ValueError("block_hours must divide 24")
        if not 0 < self.spot_offer_quantile < 1 or not 0 < self.reserved_max_quantile < 1:
            raise ValueError("quantiles must be in (0, 1)")
        if not 0 < self.reserved_break_target < 1:
            raise ValueError("reserved_break_target must be in (0, 1)")
        if not 0 <= self.spot_risk_aversion <= 1 or not 0 <= self.spot_reference_risk < 1:
            raise ValueError("spot_risk_aversion must be in [0, 1] and spot_reference_risk in [0, 1)")
        missing = [t for t in self.reserved_terms_days if t not in self.term_discount]
        if missing:
            raise ValueError(f"term_discount has no entry for term(s) {missing} (days)")
        if any(not 0 <= d < 1 for d in self.term_discount.values()):
            raise ValueError("term discounts must be in [0, 1)")

    def product(self, days: int) -> str:
        return f"reserved_{days}d"
