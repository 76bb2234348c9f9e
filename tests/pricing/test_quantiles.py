"""pricing.quantiles: the seven forecast quantiles as a piecewise-linear distribution."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing.quantiles import LEVELS, cdf_at, grid, quantile_at

levels_u = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def valid_rows(draw, strict: bool = False):
    """(q (n, 7) non-crossing within [0, cap], cap (n,)); strict: increasing with room at both ends."""
    n = draw(st.integers(1, 5))
    qs, caps = [], []
    for _ in range(n):
        cap = float(draw(st.integers(8, 512)))
        if strict:
            # gaps of at least 1% of capacity, q05 > 0 and q95 < cap: no flat stretch anywhere
            w = np.asarray(draw(st.lists(st.floats(0.01, 1.0), min_size=9, max_size=9)))
            q = np.cumsum(w)[:8] / w.sum() * cap
            q = q[:7] if draw(st.booleans()) else q[1:]
            assert q[0] > 0 and q[-1] < cap
        else:
            raw = draw(st.lists(st.floats(0.0, 1.0), min_size=7, max_size=7))
            q = np.sort(np.asarray(raw)) * cap
            if draw(st.booleans()):
                q = np.round(q)  # integer GPU counts: ties are common in real forecasts
        qs.append(q)
        caps.append(cap)
    return np.asarray(qs), np.asarray(caps)


@settings(max_examples=200, deadline=None)
@given(valid_rows())
def test_reproduces_the_given_quantiles(rows):
    q, cap = rows
    out = quantile_at(q, cap, LEVELS)
    assert out.shape == q.shape
    np.testing.assert_allclose(out, q, rtol=0, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(valid_rows(), st.lists(levels_u, min_size=1, max_size=30))
def test_monotone_in_u_and_within_capacity(rows, us):
    q, cap = rows
    u = np.sort(np.asarray(us + [0.0, 1.0]))
    out = quantile_at(q, cap, u)
    assert out.shape == (len(q), len(u))
    assert (np.diff(out, axis=1) >= -1e-9).all()
    assert (out >= -1e-12).all() and (out <= cap[:, None] + 1e-9).all()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-100, 700), min_size=7, max_size=7), st.integers(8, 512),
       st.lists(levels_u, min_size=2, max_size=20))
def test_crossing_or_out_of_range_input_is_repaired(raw, cap, us):
    """Even a bad row (crossing, negative, above capacity) yields a monotone function in [0, cap]."""
    u = np.sort(np.asarray(us))
    out = quantile_at(np.asarray(raw), np.asarray(float(cap)), u)
    assert (np.diff(out) >= -1e-9).all()
    assert (out >= 0).all() and (out <= cap).all()


@settings(max_examples=200, deadline=None)
@given(valid_rows(strict=True), st.floats(0.0, 1.0))
def test_cdf_inverts_the_quantile_function(rows, u):
    q, cap = rows
    k = quantile_at(q, cap, u)[:, 0]
    n = 400
    got = cdf_at(q, cap, k, n=n)
    # the CDF is read off a grid of n mid-points: resolution 1/n
    np.testing.assert_allclose(got, u, atol=1.0 / n + 1e-9)


def test_tails_extend_the_nearest_slope_and_clip():
    q = np.array([10, 20, 30, 40, 50, 60, 70], float)
    out = quantile_at(q, np.array(100.0), [0.0, 0.025, 0.975, 1.0])
    # below q05: slope of q05..q10 (10 GPUs per 0.05) -> 0 at u=0; above q95: slope of q90..q95
    np.testing.assert_allclose(out, [0.0, 5.0, 75.0, 80.0])
    clipped = quantile_at(q, np.array(72.0), [1.0])
    assert clipped[0] == 72.0


def test_point_mass_forecast_is_that_value_everywhere():
    q = np.full(7, 40.0)
    out = quantile_at(q, np.array(64.0), grid(50))
    assert (out == 40.0).all()
    assert cdf_at(q, np.array(64.0), np.array(40.0)) == 0.0     # P(idle < 40)
    assert cdf_at(q, np.array(64.0), np.array(40.5)) == 1.0
