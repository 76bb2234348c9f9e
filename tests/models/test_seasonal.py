"""MSTL with R's loess jumps: the same decomposition as statsmodels' MSTL, to a few hundredths."""
from __future__ import annotations

import numpy as np
import pytest
from statsmodels.tsa.seasonal import MSTL

from models.seasonal import mstl_decompose


@pytest.mark.parametrize("seed", [0, 1])
def test_decomposition_matches_statsmodels_mstl(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(24 * 56)
    y = 50 + 10 * np.sin(2 * np.pi * t / 24) + 5 * np.sin(2 * np.pi * t / 168) + rng.normal(0, 3, len(t))
    y += np.cumsum(rng.normal(0, 0.3, len(t)))  # a wandering level
    ref = np.asarray(MSTL(y, periods=[24, 168]).fit().seasonal)
    got = mstl_decompose(y, [168, 24])  # any order in, ascending periods out (as MSTL)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 0.1 < np.abs(ref).max()
    one = mstl_decompose(y, [24])
    assert np.abs(one[:, 0] - np.asarray(MSTL(y, periods=[24]).fit().seasonal)).max() < 0.1
