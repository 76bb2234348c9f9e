"""Spot and reserved offers per pool (before guardrails).

Reserved (1/7/30 days from the next UTC midnight), with the window-risk model
(pricing.capacity_risk): each term offers the largest k whose break probability (some sample
of the window under k idle GPUs) stays at or under the lower of `reserved_break_target` and the
newsvendor critical ratio margin / (margin + reclaim penalty) - one more GPU earns the margin
when it stays idle and costs the penalty when training reclaims it. Terms are nested tranches:
the longest term takes the stable base, shorter terms the extra that only their window can
promise, so in every hour the reserved total stays within that hour's promise. Without a fitted
risk model (too little history) the older rule applies: a low quantile of the forecast window
minimum under a drawdown guard.

Spot (6 h UTC blocks over 7 days): with the risk model, the most GPUs (on top of reserved)
whose calibrated interruption risk stays at or under `spot_offer_quantile`, and that risk is
what is published; otherwise the forecast's quantile of the block minimum. The price maximizes
price x E[min(demand(price), offered, idle)] over the forecast distribution on a log grid
between floor and ceiling, with demand read against the reference discounted for the block's
risk above what AWS spot customers already accept (`spot_risk_aversion`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.base import QCOLS
from pricing.capacity_risk import CapacityRisk
from pricing.demand import DemandModel
from pricing.drawdown import Drawdowns
from pricing.quantiles import grid, quantile_at
from pricing.rules import PricingRules

HOUR = pd.Timedelta(hours=1)


@dataclass(frozen=True)
class Market:
    """Per-pool facts the optimizer needs: gpu_model, region, capacity, floor and the references."""

    pools: pd.DataFrame  # pool, gpu_model, region, gpus_total, floor (+ gpu_class from the catalogue)
    references: pd.DataFrame  # gpu_model, product_class, provider, region, sku, product, usd_per_gpu_hour
    resolved: pd.DataFrame | None = None  # catalogue resolution per gpu_model (pricing.catalog.RESOLVED_COLUMNS)
    costs: pd.DataFrame | None = None  # cost parts and floor per gpu_model (pricing.costs.COST_COLUMNS)


def next_midnight(t: pd.Timestamp) -> pd.Timestamp:
    return t.floor("D") + pd.Timedelta(days=1)


def first_block(t: pd.Timestamp, block_hours: int) -> pd.Timestamp:
    """First UTC-aligned block boundary at or after t."""
    return t.ceil(f"{block_hours}h")


def _cube(hourly: pd.DataFrame, pools: list[str], hours: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """(pool, hour, quantile) array and a mask of which (pool, hour) cells the forecast has."""
    idx = pd.MultiIndex.from_product([pools, hours], names=["unique_id", "ds"])
    f = hourly.set_index(["unique_id", "ds"])[QCOLS].reindex(idx)
    arr = f.to_numpy(float).reshape(len(pools), len(hours), len(QCOLS))
    return arr, np.isfinite(arr).all(axis=-1)


def _reference(market: Market, cls: str) -> pd.DataFrame:
    r = market.references[market.references["product_class"] == cls]
    r = r.rename(columns={"provider": "reference_provider", "sku": "reference_sku", "product": "reference_product",
                          "usd_per_gpu_hour": "reference_price", "region": "reference_region"})
    r = r.rename(columns={"as_of": "reference_as_of"})
    cols = ["gpu_model", "reference_provider", "reference_region", "reference_sku", "reference_product",
            "reference_price", "reference_as_of"]
    # catalogue details (reference GPU, its list price, the performance factor) when the market has them
    extra = {"reference_gpu_model": "reference_gpu_model", "list_usd_per_gpu_hour": "reference_list_price",
             "performance_factor": "performance_factor"}
    r = r.rename(columns={k: v for k, v in extra.items() if k in r.columns})
    cols += [v for k, v in extra.items() if v in r.columns]
    return market.pools.merge(r[cols], on="gpu_model", how="left")


def reserved_quantities(hourly: pd.DataFrame, market: Market, rules: PricingRules, start: pd.Timestamp,
                        drawdowns: Drawdowns | None = None, booked: pd.DataFrame | None = None,
                        risk: CapacityRisk | None = None) -> pd.DataFrame:
    """One row per pool x term: window, newsvendor level, offered tranche and its break probability.

    With a fitted `risk` model each term offers its largest k under the break target; without
    one, a forecast quantile of the window minimum, and with `drawdowns` no term offers more than
    idle now minus the fleet's historical drawdown."""
    use_risk = risk is not None and risk.fitted
    pools = _reference(market, "reserved")
    terms = sorted(rules.reserved_terms_days)
    hours = pd.date_range(start, periods=24 * terms[-1], freq="h")
    cube, have = _cube(hourly, pools["pool"].tolist(), hours)
    cap = pools["gpus_total"].to_numpy(float)
    # GPUs customers already booked (telemetry cannot see future leases): not for sale twice
    sold = reserved_in_hours(booked if booked is not None else pd.DataFrame(), pools["pool"].tolist(), hours)
    rows = []
    raw = np.zeros((len(pools), len(terms)))
    for j, d in enumerate(terms):
        n = 24 * d
        disc = rules.term_discount[d]
        upper = (1 - rules.min_undercut) * pools["reference_price"].to_numpy(float) * (1 - disc)
        margin = upper - pools["floor"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            alpha = np.clip(margin / (margin + rules.reclaim_penalty_multiple * upper), 0, rules.reserved_max_quantile)
        # every hour's quantile at the pool's own level, then the window minimum (comonotone hours)
        # days are close to independent (jobs turn over within a day), hours within a day move
        # together: give each day an equal share of the risk budget (Sidak), 1 - (1 - a)^(1/days)
        lv = 1 - (1 - np.nan_to_num(alpha, nan=0.0)) ** (1.0 / d)
        P = len(pools)
        per_hour = _at_level(cube[:, :n, :].reshape(P * n, -1), np.repeat(cap, n), np.repeat(lv, n)).reshape(P, n)
        qmin = np.nanmin(np.where(have[:, :n], per_hour, np.inf), axis=1)
        complete = have[:, :n].all(axis=1)
        ok = complete & np.isfinite(upper) & (margin > 0)
        if use_risk:  # the term's own break probability, at the stricter of the target and the newsvendor level
            level = np.fmin(rules.reserved_break_target, np.nan_to_num(alpha, nan=0.0))
            k = risk.term_largest(pools["pool"].tolist(), cap, d, level)
            guard = np.full(len(pools), np.inf)
        else:
            k = np.floor(np.clip(qmin, 0, cap) + 1e-9)
            guard = (drawdowns.cap_gpus(pools["pool"], cap, d, np.nan_to_num(alpha, nan=0.0))
                     if drawdowns is not None else np.full(len(pools), np.inf))
        raw[:, j] = np.where(ok, np.clip(np.fmin(k, np.nan_to_num(guard, nan=0.0)) - sold[:, :n].max(axis=1), 0, None), 0)
        rows.append(pd.DataFrame({
            "pool": pools["pool"], "term_days": d, "start": start, "end": start + pd.Timedelta(days=d),
            "newsvendor_level": alpha, "window_min_quantile": np.where(complete, qmin, np.nan),
            "complete": complete, "upper": upper, "margin_ok": margin > 0, "history_cap": guard,
        }))
    cum = np.minimum.accumulate(raw, axis=1)  # c_i = min(k_j, j <= i): non-increasing with the term
    tranche = cum - np.concatenate([cum[:, 1:], np.zeros((len(pools), 1))], axis=1)
    out = pd.concat(rows, ignore_index=True)
    out["gpus_offered"] = tranche.T.reshape(-1).astype(int)
    out["reserved_total_in_window"] = cum.T.reshape(-1)
    # what each tranche risks: its GPUs sit on top of the longer terms', so it breaks when the
    # window's minimum falls under the whole promise standing in that window
    out["break_probability"] = np.nan
    if use_risk:
        names = pools["pool"].tolist()
        out["break_probability"] = np.concatenate(
            [np.where(tranche[:, j] > 0, risk.term_break(names, d, cum[:, j] + sold[:, :24 * d].max(axis=1)), np.nan)
             for j, d in enumerate(terms)])
    return out.merge(pools, on="pool")


def _at_level(q: np.ndarray, cap: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Quantile function of each row at its own level."""
    from pricing.quantiles import _knots

    levels, vals = _knots(np.asarray(q, float), np.asarray(cap, float))
    idx = np.clip(np.searchsorted(levels, level, side="right") - 1, 0, len(levels) - 2)
    w = (level - levels[idx]) / (levels[idx + 1] - levels[idx])
    r = np.arange(len(q))
    a, b = vals[r, idx], vals[r, idx + 1]
    return np.where(w < 0.5, a + (b - a) * w, b - (b - a) * (1 - w))  # exact at knots and flat stretches


def reserved_in_hours(res: pd.DataFrame, pools: list[str], hours: pd.DatetimeIndex) -> np.ndarray:
    """GPUs held by reserved offers in each (pool, hour): the sum of tranches whose window covers it."""
    out = np.zeros((len(pools), len(hours)))
    if res is None or res.empty:
        return out
    pos = {p: i for i, p in enumerate(pools)}
    hv = hours.values
    for r in res.itertuples(index=False):
        if r.gpus_offered > 0 and r.pool in pos:
            cover = (hv >= np.datetime64(r.start.tz_convert(None))) & (hv < np.datetime64(r.end.tz_convert(None)))
            out[pos[r.pool], cover] += r.gpus_offered
    return out


def spot_offers(
    hourly: pd.DataFrame, market: Market, rules: PricingRules, demand: DemandModel,
    valid_from: pd.Timestamp, reserved: pd.DataFrame, booked: pd.DataFrame | None = None,
    drawdowns: Drawdowns | None = None, risk: CapacityRisk | None = None,
) -> pd.DataFrame:
    """One row per pool x block: GPUs offered, optimal price, risk, expected sales (before guardrails)."""
    pools = _reference(market, "spot")
    names = pools["pool"].tolist()
    B = rules.block_hours
    start = first_block(valid_from, B)
    nb = rules.spot_days * 24 // B
    hours = pd.date_range(start, periods=nb * B, freq="h")
    cube, have = _cube(hourly, names, hours)
    cap = pools["gpus_total"].to_numpy(float)
    held = reserved_in_hours(reserved, names, hours) + reserved_in_hours(booked, names, hours)
    u = grid(50)
    P = len(names)
    vals = quantile_at(cube.reshape(P * nb * B, -1), np.repeat(cap, nb * B), u).reshape(P, nb, B, len(u))
    at_q = quantile_at(cube.reshape(P * nb * B, -1), np.repeat(cap, nb * B), rules.spot_offer_quantile)
    at_q = at_q.reshape(P, nb, B)
    held_b = held.reshape(P, nb, B).max(axis=2)
    complete = have.reshape(P, nb, B).all(axis=2)
    use_model = risk is not None and risk.fitted
    if use_model:
        # the most GPUs the block can hold at the risk target, less what reserved already holds there
        total = risk.block_largest(names, cap, rules.spot_offer_quantile)[:, :nb]
        k = np.where(complete, np.clip(total - held_b, 0, None), 0)
        irisk = np.where(k > 0, risk.block_break(names, held_b + k)[:, :nb], np.nan)
    else:
        k = np.floor(np.clip(at_q.min(axis=2) - held_b, 0, None) + 1e-9)
        k = np.where(complete, k, 0)
        # interruption: P(min over block hours of idle < held + k) = max over hours of F_h(held + k)
        thresh = (held_b + k)[:, :, None, None]
        irisk = np.where(k > 0, (vals < thresh).mean(axis=3).max(axis=2), np.nan)
    if drawdowns is not None and not use_model:
        # hours of a block do not really move together and long-lead forecasts are too narrow: the
        # fleet's own history of dips into blocks that far out is a floor under the forecast's risk
        origin = hourly["ds"].min()
        lead = np.broadcast_to(((start - origin) // pd.Timedelta(hours=1) + np.arange(nb) * B) // 24, (P, nb))
        hist = drawdowns.block_risk(pools["pool"], cap, lead, held_b + k)
        irisk = np.where(k > 0, np.fmax(irisk, hist), np.nan)
    # a block that may be cut short is worth less than AWS spot at the same price: demand reads the
    # reference discounted for the risk above what spot customers already accept there
    a = rules.spot_risk_aversion
    value = np.clip((1 - a * np.nan_to_num(irisk, nan=rules.spot_reference_risk)) / (1 - a * rules.spot_reference_risk),
                    0.0, 1.0)
    avail = np.clip(vals - held_b[:, :, None, None], 0, None).reshape(P, nb, B * len(u))

    floor = pools["floor"].to_numpy(float)
    ceiling = (1 - rules.min_undercut) * pools["reference_price"].to_numpy(float)
    best_p = np.full((P, nb), np.nan)
    exp_sold = np.full((P, nb), np.nan)
    m = rules.price_grid
    for i, row in enumerate(pools.itertuples(index=False)):
        lo, hi = floor[i], ceiling[i]
        if not (np.isfinite(lo) and np.isfinite(hi) and hi >= lo >= 0 and hi > 0):
            continue
        lo = max(lo, hi * 1e-3)  # a zero floor (free power, written-off GPUs) still needs a log grid
        curve = demand.curve(row.gpu_model, "spot")
        prices = lo * (hi / lo) ** (np.arange(m) / max(m - 1, 1))
        want = curve.gpus(prices[None, :], row.reference_price * value[i][:, None], cap[i])  # (nb, m)
        s = np.minimum(want, k[i][:, None])                                        # (nb, m)
        sold = np.minimum(s[:, :, None], avail[i][:, None, :]).mean(axis=2) * B    # GPU-hours per block
        rev = sold * prices[None, :]
        j = rev.argmax(axis=1)
        best_p[i] = prices[j]
        exp_sold[i] = sold[np.arange(nb), j]
    starts = start + pd.to_timedelta(np.arange(nb) * B, unit="h")
    out = pd.DataFrame({
        "pool": np.repeat(names, nb), "product": "spot",
        "start": np.tile(starts, P), "hours": B,
        "gpus_offered": k.reshape(-1).astype(int), "base_price": best_p.reshape(-1),
        "interruption_risk": irisk.reshape(-1), "risk_value": value.reshape(-1), "expected_gpu_hours_sold": exp_sold.reshape(-1),
        "expected_idle_gpus": np.where(complete, np.mean(vals, axis=(2, 3)), np.nan).reshape(-1),
        "complete": complete.reshape(-1), "ceiling": np.repeat(ceiling, nb), "floor": np.repeat(floor, nb),
    })
    out["end"] = out["start"] + pd.Timedelta(hours=B)
    return out.merge(pools.drop(columns=["floor"]), on="pool")


def reserved_prices(
    res: pd.DataFrame, spot: pd.DataFrame, rules: PricingRules, demand: DemandModel,
) -> pd.DataFrame:
    """Demand-optimal reserved prices within [max(floor, spot expected price), discounted ceiling]."""
    res = res.copy()
    sp = spot[spot["final_price"].notna() & (spot["gpus_offered"] > 0)]
    parity = []
    for r in res.itertuples(index=False):
        w = sp[(sp["pool"] == r.pool) & (sp["start"] >= r.start) & (sp["start"] < r.end)]
        if w.empty:  # 30-day window past the spot horizon: the pool's spot prices from the start on
            w = sp[(sp["pool"] == r.pool) & (sp["start"] >= r.start)]
        parity.append(float(w["final_price"].mean()) if len(w) else np.nan)
    res["spot_expected_price"] = parity
    res["ceiling"] = (1 - rules.min_undercut) * res["reference_price"]
    base = np.full(len(res), np.nan)
    for (g, d), idx in res.groupby(["gpu_model", "term_days"]).groups.items():
        r = res.loc[idx]
        curve = demand.curve(str(g), rules.product(int(d)))
        clear = curve.clearing_price(r["gpus_offered"].to_numpy(float), r["reference_price"].to_numpy(float),
                                     r["gpus_total"].to_numpy(float))
        upper = r["upper"].to_numpy(float)
        lower = np.fmax(r["floor"].to_numpy(float), r["spot_expected_price"].to_numpy(float))
        # revenue p x min(D(p), k) peaks where demand clears k when elasticity > 1, else at the top
        p = np.minimum(clear, upper) if curve.elasticity > 1 else upper
        base[np.asarray([res.index.get_loc(i) for i in idx])] = np.maximum(p, lower)
    res["base_price"] = base
    res["product"] = [rules.product(int(d)) for d in res["term_days"]]
    res["hours"] = res["term_days"] * 24
    return res
