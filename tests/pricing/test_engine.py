"""pricing.engine.reprice_expected_sold: expected sales follow the published price, not the optimizer's."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pricing.demand import DemandModel
from pricing.engine import reprice_expected_sold
from pricing.rules import DemandPrior


def _items() -> pd.DataFrame:
    return pd.DataFrame({
        "pool": ["a", "a", "a", "b"], "gpu_model": "V100", "product": ["spot", "spot", "reserved_7d", "spot"],
        "hours": [6, 6, 168, 6], "gpus_offered": [8, 8, 4, 8], "offered": [True, True, True, False],
        "price_per_gpu_hour": [0.30, 0.20, 1.00, np.nan], "expected_gpu_hours_sold": [20.0, 40.0, 0.0, np.nan],
        "reference_price": [0.40, 0.40, 1.30, 0.40], "gpus_total": [16, 16, 16, 16],
    })


def test_a_raise_sells_less_a_cut_sells_more_capped_at_the_offer():
    demand = DemandModel(prior=DemandPrior(elasticity=2.0, share_at_reference=0.25))
    it = _items()
    prior = np.array([0.25, 0.10, 1.00, 0.2])  # a: +20% and doubled; the reserved tranche unchanged
    out = reprice_expected_sold(it, prior, demand)
    assert abs(out[0] - 20.0 * (0.30 / 0.25) ** -2) < 1e-9          # 13.9: a raise sells less
    assert out[1] == 40.0 * 2.0 ** -2                                  # 10.0
    it.loc[1, "price_per_gpu_hour"] = 0.05                             # a deep cut: demand x4, capped at 48
    assert reprice_expected_sold(it, prior, demand)[1] == 8 * 6
    assert out[2] == 0.0 and np.isnan(out[3])                          # unmoved and unoffered rows untouched


def test_a_moved_reserved_tranche_is_priced_on_the_demand_curve():
    demand = DemandModel(prior=DemandPrior(elasticity=2.0, share_at_reference=0.25))
    it = _items()
    out = reprice_expected_sold(it, np.array([0.30, 0.20, 1.30, np.nan]), demand)
    want = 0.25 * 16 * (1.00 / 1.30) ** -2                            # 2.37 GPUs wanted at 1.00
    assert abs(out[2] - min(want, 4) * 168) < 1e-9
