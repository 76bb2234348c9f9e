"""pricing.demand: constant-elasticity curves refit from bookings (Poisson GLM), prior otherwise."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing.demand import DemandCurve, DemandModel, fit_curve
from pricing.rules import DemandPrior

E_TRUE, SHARE_TRUE = 1.8, 0.3
PRIOR = DemandPrior(elasticity=2.0, share_at_reference=0.25)


def observations(seed: int, n: int = 400, sold_out: str = "random") -> pd.DataFrame:
    """Items priced 0.5x-1.2x their reference, bookings ~ Poisson(0.3 x cap x ratio^-1.8), capped at offered.

    sold_out="random": ~15% of items (any price) were offered well under their demand -> sold out.
    sold_out="cheap": items under 0.85x reference were offered well under their demand -> sold out;
    their bookings say "at least this many" and would flatten the curve if taken at face value.
    """
    rng = np.random.default_rng(seed)
    ref = rng.uniform(1.0, 4.0, n)
    ratio = rng.uniform(0.5, 1.2, n)
    cap = rng.integers(16, 257, n)
    mu = SHARE_TRUE * cap * ratio ** (-E_TRUE)
    demand = rng.poisson(mu)
    short = rng.uniform(size=n) < 0.15 if sold_out == "random" else ratio < 0.85
    offered = np.where(short, np.maximum(1, np.floor(0.3 * mu)), cap).astype(int)
    return pd.DataFrame({
        "gpu_model": "H100", "product": "spot",
        "price_per_gpu_hour": ratio * ref, "reference_price": ref, "capacity": cap,
        "gpus_offered": offered, "gpus_booked": np.minimum(demand, offered),
    })


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fit_recovers_elasticity_and_share(seed):
    obs = observations(seed)
    sold_out = (obs["gpus_booked"] >= obs["gpus_offered"]).sum()
    assert sold_out > 20  # the data does contain censored items
    c = fit_curve(obs, PRIOR)
    assert c.source == "fit"
    assert c.n_items == len(obs) - sold_out
    assert abs(c.elasticity - E_TRUE) < 0.25
    assert abs(c.share_at_reference / SHARE_TRUE - 1) < 0.25


def test_demand_model_fits_per_gpu_model_and_product():
    a = observations(5)
    b = observations(6, n=20).assign(gpu_model="A100")         # too few items: prior
    c = observations(7).assign(product="reserved_7d")
    model = DemandModel(prior=PRIOR).fit(pd.concat([a, b, c], ignore_index=True))
    spot = model.curve("H100", "spot")
    assert spot.source == "fit" and abs(spot.elasticity - E_TRUE) < 0.25
    assert model.curve("H100", "reserved_7d").source == "fit"
    a100 = model.curve("A100", "spot")
    assert a100.source == "prior" and (a100.elasticity, a100.share_at_reference) == (2.0, 0.25)
    assert model.curve("L4", "spot").source == "prior"        # never seen
    t = model.table()
    assert set(zip(t["gpu_model"], t["product"])) == {("H100", "spot"), ("A100", "spot"), ("H100", "reserved_7d")}
    assert list(t["source"][t["gpu_model"] == "A100"]) == ["prior"]


def test_no_bookings_keeps_the_prior_everywhere():
    for obs in (None, observations(0).iloc[:0]):
        m = DemandModel(prior=PRIOR, product_priors={"reserved_30d": DemandPrior(1.2, 0.5)}).fit(obs)
        assert m.curve("H100", "spot") == DemandCurve(2.0, 0.25, "prior", 0)
        r30 = m.curve("H100", "reserved_30d")
        assert (r30.elasticity, r30.share_at_reference, r30.source) == (1.2, 0.5, "prior")
        assert m.table().empty


def test_too_few_items_keeps_the_prior():
    obs = observations(1, n=40, sold_out="random")
    unsold = int((obs["gpus_booked"] < obs["gpus_offered"]).sum())
    c = fit_curve(obs, PRIOR, min_items=unsold + 1)
    assert (c.elasticity, c.share_at_reference, c.source, c.n_items) == (2.0, 0.25, "prior", unsold)
    assert fit_curve(obs, PRIOR, min_items=unsold).source == "fit"


def test_no_price_variation_keeps_the_prior():
    obs = observations(2)
    obs["price_per_gpu_hour"] = 0.8 * obs["reference_price"]   # every item at 0.8x its reference
    c = fit_curve(obs, PRIOR)
    assert c.source == "prior" and (c.elasticity, c.share_at_reference) == (2.0, 0.25)


def test_all_zero_bookings_keep_the_prior():
    obs = observations(3).assign(gpus_booked=0)
    with np.errstate(all="ignore"):
        c = fit_curve(obs, PRIOR)
    # no booking at any price cannot identify a curve (the GLM's intercept runs off to -inf)
    assert c.source == "prior" and (c.elasticity, c.share_at_reference) == (2.0, 0.25)


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_sold_out_items_are_left_out(seed):
    obs = observations(seed, sold_out="cheap")
    censored = obs["gpus_booked"] >= obs["gpus_offered"]
    assert censored.sum() > 100
    assert (obs.loc[censored, "price_per_gpu_hour"] < obs.loc[censored, "reference_price"]).all()
    fitted = fit_curve(obs, PRIOR)
    # identical to fitting the uncensored items only
    assert fitted == fit_curve(obs[~censored], PRIOR)
    assert abs(fitted.elasticity - E_TRUE) < 0.25
    assert abs(fitted.share_at_reference / SHARE_TRUE - 1) < 0.25
    # taken at face value (as if nothing had sold out) the cheap items' capped bookings flatten the curve
    naive = fit_curve(obs.assign(gpus_offered=obs["gpus_booked"] + 1), PRIOR)
    assert naive.n_items == len(obs)
    assert naive.elasticity < E_TRUE - 0.5


@settings(max_examples=100, deadline=None)
@given(st.floats(0.3, 8.0), st.floats(0.01, 5.0), st.floats(0.1, 20.0), st.integers(1, 1024), st.floats(0.001, 0.999))
def test_clearing_price_inverts_demand(e, share, ref, cap, frac):
    c = DemandCurve(e, share)
    gpus = frac * share * cap * 4.0
    p = c.clearing_price(np.array([gpus]), np.array([ref]), np.array([cap]))
    assert np.isfinite(p).all() and (p > 0).all()
    assert c.gpus(p, np.array([ref]), np.array([cap]))[0] == pytest.approx(gpus, rel=1e-9)
    assert np.isinf(c.clearing_price(np.array([0.0]), np.array([ref]), np.array([cap]))).all()
    # demand falls with price
    prices = ref * np.array([0.5, 1.0, 2.0])
    assert (np.diff(c.gpus(prices, ref, cap)) < 0).all()
