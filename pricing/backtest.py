"""Pricing backtest: replay rolling-origin forecasts on history and score the offers they make.

At each origin (`lead_hours` before a UTC midnight) the forecaster is refit on history before
the origin, given the plan as known then, and the real pricing pass prices its forecast. The
reserved offers are then checked against what really happened:

- safety: share of offered GPU-hours whose GPUs really stayed idle at every sample of the window
  (`y_min`, the fewest idle GPUs at any sample of an hour; `safety_hourly` judges on hourly means
  for comparison). Terms are tranches (the longest term at the bottom), so a tranche is safe up to
  the window's minimum idle minus the tranches under it;
- yield: offered GPU-hours / GPU-hours that were really idle in those windows;
- achievable: offered GPU-hours / what perfect hindsight could have promised safely (the floor of
  each window's real sample-level minimum, nested over the terms; per term, the whole promise
  standing in its windows against their floors), and `safe_achievable` the safe part of it: a
  rule that is safe because it sells nothing scores near 0 here;
- simulated revenue under the demand curve: sold = min(demand(price), offered), refunded and
  penalised (reclaim_penalty_multiple x price) for every GPU-hour training took back.

The naive policy offers the forecast mean of the window at a flat discount to the reference.
Spot items get a calibration check: predicted interruption risk vs how often idle really fell
below what was leased. Windows with under 75% observed hours (e.g. a masked blackout) are skipped,
and so are pools no price could sell (no reference, or a floor above the term's ceiling).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from sklearn.base import clone

from features.planned import normalize_calendar
from models.backtest import _pad_to
from models.base import Forecaster
from pricing.demand import DemandModel
from pricing.drawdown import measure
from pricing.engine import price_fleet
from pricing.capacity_risk import fit_capacity_risk
from pricing.optimizer import Market, reserved_in_hours, reserved_quantities
from pricing.rules import PricingRules

MIN_OBSERVED = 0.75


@dataclass
class PricingBacktestReport:
    offers: pd.DataFrame   # one row per policy x origin x pool x reserved term
    spot: pd.DataFrame     # one row per offered spot block
    summary: pd.DataFrame  # policy x term: safety, yield, revenue
    origins: list[pd.Timestamp]
    skipped_windows: int
    curve: pd.DataFrame = field(default_factory=pd.DataFrame)  # reserved sizing per break target (risk model)


def sellable(res: pd.DataFrame, rules: PricingRules) -> pd.DataFrame:
    """Reserved rows of pools that could be sold at all (a reference, and a floor under the term's
    ceiling): capacity no price could sell is not counted against a risk rule, nor by the oracle."""
    disc = res["term_days"].map(rules.term_discount).fillna(0.0).to_numpy(float)
    ceiling = (1 - rules.min_undercut) * res["reference_price"].to_numpy(float) * (1 - disc)
    return res[np.isfinite(ceiling) & (res["floor"].to_numpy(float) < ceiling)].copy()


def backtest_origins(df: pd.DataFrame, lead_hours: int, max_term_days: int, n_windows: int,
                     min_train_days: int = 7) -> list[pd.Timestamp]:
    """Origins `lead_hours` before a midnight whose longest reserved window ends inside the data."""
    end = df["ds"].max() + pd.Timedelta(hours=1)
    first = df["ds"].min() + pd.Timedelta(days=min_train_days)
    last_start = (end - pd.Timedelta(days=max_term_days)).floor("D")
    starts = pd.date_range(first.ceil("D"), last_start, freq="D")
    origins = [s - pd.Timedelta(hours=lead_hours) for s in starts]
    return [o for o in origins if o >= first][-n_windows:]


def sample_min(actual: pd.DataFrame) -> pd.Series:
    """The fewest idle GPUs at any sample of each hour (`y_min`), the hourly mean where it is unknown.

    A warehouse refreshed before it kept `idle_gpus_min` has no sample-level truth for old hours;
    the mean is then the best bound there is (and `sample_level` says so per window)."""
    if "y_min" not in actual:
        return actual["y"]
    return actual["y_min"].where(actual["y_min"].notna() | actual["y"].isna(), actual["y"])


def _windows(items: pd.DataFrame, actual: pd.DataFrame) -> pd.DataFrame:
    """Per item: observed share, the window's fewest idle GPUs at any sample (`real_min`) and on the
    hourly means (`real_min_hourly`), and the real idle GPU-hours over [start, end)."""
    a = actual.assign(_m=sample_min(actual), _s=actual["y_min"].notna() if "y_min" in actual else False)
    rows = []
    for r in items[["pool", "start", "end"]].drop_duplicates().itertuples(index=False):
        w = a.loc[(a["unique_id"] == r.pool) & (a["ds"] >= r.start) & (a["ds"] < r.end)]
        y, m = w["y"].to_numpy(float), w["_m"].to_numpy(float)
        H = int((r.end - r.start) / pd.Timedelta(hours=1))
        ok = np.isfinite(y)
        rows.append({"pool": r.pool, "start": r.start, "end": r.end, "observed": ok.sum() / H,
                     "real_min": m[ok].min() if ok.any() else np.nan,
                     "real_min_hourly": y[ok].min() if ok.any() else np.nan,
                     "sample_level": bool(w["_s"].to_numpy(bool)[ok].all()) if ok.any() else False,
                     "real_idle_gpu_hours": y[ok].mean() * H if ok.any() else np.nan})
    return pd.DataFrame(rows)


def oracle_gpu_hours(off: pd.DataFrame) -> pd.Series:
    """What perfect hindsight could have promised safely, per offer row (one policy, scored windows
    only): the floor of each window's real sample-level minimum, nested over the terms that start
    together (longest at the bottom), as the tranche GPU-hours of that term."""
    o = off.sort_values(["origin", "pool", "term_days"], ascending=[True, True, False])
    best = np.floor(np.clip(o["real_min"].fillna(0.0), 0, None))
    # windows start together, so a shorter one lies inside every longer one and can promise at least as much
    nested = best.groupby([o["origin"], o["pool"]]).cummax()
    below = nested.groupby([o["origin"], o["pool"]]).shift(1).fillna(0.0)
    return ((nested - below).clip(lower=0) * o["hours"]).reindex(off.index)


def window_measures(off: pd.DataFrame) -> pd.DataFrame:
    """Per row, the whole promise standing in its window (its tranche plus the longer terms' under
    it), the safe part of that promise, and what hindsight could promise there: per-term
    achievable compares these, so a term is not judged on the tranche split."""
    total = (off["base"] + off["gpus_offered"]).to_numpy(float)
    best = np.floor(np.clip(off["real_min"].fillna(0.0).to_numpy(float), 0, None))
    H = off["hours"].to_numpy(float)
    return pd.DataFrame({"window_offered_gpu_hours": total * H, "window_safe_gpu_hours": np.minimum(total, best) * H,
                         "window_oracle_gpu_hours": best * H}, index=off.index)


def _score(off: pd.DataFrame, actual: pd.DataFrame, rules: PricingRules, demand: DemandModel) -> pd.DataFrame:
    """Safety, yield inputs and simulated revenue of reserved tranches (one policy)."""
    off = off.sort_values(["pool", "term_days"], ascending=[True, False]).copy()
    # the GPUs of longer terms sit under a tranche (longest term at the bottom)
    off["base"] = off.groupby("pool")["gpus_offered"].cumsum() - off["gpus_offered"]
    off = off.merge(_windows(off, actual), on=["pool", "start", "end"], how="left")
    H = off["hours"].to_numpy(float)
    k = off["gpus_offered"].to_numpy(float)
    base = off["base"].to_numpy(float)
    m = off["real_min"].to_numpy(float)
    off["offered_gpu_hours"] = k * H
    off["safe_gpu_hours"] = np.clip(m - base, 0, k) * H  # at sample level: a promise breaks at a sample
    off["safe_gpu_hours_hourly"] = np.clip(off["real_min_hourly"].to_numpy(float) - base, 0, k) * H
    want = np.array([demand.curve(g, p).gpus(pr, ref, cap) if k_ > 0 else 0.0 for g, p, pr, ref, cap, k_ in zip(
        off["gpu_model"], off["product"], off["price_per_gpu_hour"], off["reference_price"], off["gpus_total"], k)])
    sold = np.minimum(np.nan_to_num(want), k)
    # hours where training took back sold GPUs: approximated by the observed minimum over the window
    short = np.clip(base + sold - np.nan_to_num(m, nan=0.0), 0, sold)
    reclaimed = short * H * np.where(np.isfinite(m), 1.0, 0.0)
    price = off["price_per_gpu_hour"].to_numpy(float)
    off["sold_gpus"] = sold
    off["revenue_gross"] = price * sold * H
    off["reclaimed_gpu_hours"] = reclaimed
    off["penalties"] = price * reclaimed * (1 + rules.reclaim_penalty_multiple)
    off["revenue_net"] = off["revenue_gross"] - off["penalties"]
    return off


def _naive(items: pd.DataFrame, hourly: pd.DataFrame, rules: PricingRules, discount: float) -> pd.DataFrame:
    """Offer the forecast mean of each window, as tranches, at a flat discount to the reference."""
    res = items[items["product"] != "spot"].copy()
    means = []
    for r in res.itertuples(index=False):
        f = hourly[(hourly["unique_id"] == r.pool) & (hourly["ds"] >= r.start) & (hourly["ds"] < r.end)]
        means.append(f["mean"].mean() if len(f) else 0.0)
    res["raw"] = np.floor(np.nan_to_num(np.asarray(means, float)))
    res = res.sort_values(["pool", "term_days"])
    cum = res.groupby("pool")["raw"].cummin()
    nxt = cum.groupby(res["pool"]).shift(-1).fillna(0)
    res["gpus_offered"] = (cum - nxt).clip(lower=0).astype(int)
    res["price_per_gpu_hour"] = np.maximum((1 - discount) * res["reference_price"], res["floor"])
    res["offered"] = res["reference_price"].notna() & (res["gpus_offered"] >= rules.min_gpus)
    return res.drop(columns=["raw"])


def pricing_backtest(
    forecaster: Forecaster, df: pd.DataFrame, calendar: pd.DataFrame | None, market: Market, rules: PricingRules,
    demand: DemandModel, lead_hours: int = 6, n_windows: int = 10, naive_discount: float = 0.2,
    on_window: Callable[[int, int], None] | None = None, history_guard: bool = True,
    risk_model=None, targets: tuple[float, ...] = (),
) -> PricingBacktestReport:
    """Replay `forecaster` from rolling origins, price, and score reserved and spot offers on what happened.

    With `risk_model` (a WindowRiskModel) it is refit at every origin on the history before it
    and sizes the offers; `targets` re-size the reserved terms at each per-lease break target
    (the safety/yield curve a default is chosen from)."""
    terms = tuple(sorted(rules.reserved_terms_days))
    span_days = (df["ds"].max() - df["ds"].min()) / pd.Timedelta(days=1)
    terms = tuple(t for t in terms if t <= span_days - 8) or terms[:1]
    rules = replace(rules, reserved_terms_days=terms)
    origins = backtest_origins(df, lead_hours, min(terms), n_windows)
    if not origins:
        raise ValueError("not enough history for a pricing backtest (7 days of training + the longest term)")
    h = lead_hours + 24 * max(max(terms), rules.spot_days) + rules.block_hours
    cal = normalize_calendar(calendar)
    offers, spots, curves = [], [], []
    skipped = 0
    end = df["ds"].max() + pd.Timedelta(hours=1)
    for i, origin in enumerate(origins):
        # every term whose window ends inside the data (short terms get more origins than long ones)
        fit = tuple(t for t in terms if origin + pd.Timedelta(hours=lead_hours) + pd.Timedelta(days=t) <= end)
        rules_o = replace(rules, reserved_terms_days=fit)
        train = _pad_to(df[df["ds"] < origin], origin)
        known = cal[cal["known_at"] <= origin]
        fc = clone(forecaster).fit(train, known).predict(h, X_df=known)
        caps_o = train.sort_values("ds").groupby("unique_id")["gpus_total"].last()  # capacity as known then
        fc["gpus_total"] = fc["unique_id"].map(caps_o)
        market_o = Market(market.pools.assign(gpus_total=market.pools["pool"].map(caps_o)), market.references)
        market_o = Market(market_o.pools[market_o.pools["gpus_total"].notna()].reset_index(drop=True), market.references)
        risk = fit_capacity_risk(train, known, origin, rules_o, clone(risk_model)) if risk_model is not None else None
        use_risk = risk is not None and risk.fitted
        dd = measure(df[df["ds"] < origin], fit) if history_guard and not use_risk else None
        items = price_fleet(fc, market_o, rules_o, demand, origin, drawdowns=dd, risk=risk)
        if use_risk:
            for t in targets:
                res_t = reserved_quantities(fc, market_o, replace(rules_o, reserved_break_target=t), origin.ceil("D"),
                                            risk=risk)
                res_t = res_t.assign(product=[rules.product(int(d)) for d in res_t["term_days"]],
                                     hours=res_t["term_days"] * 24, price_per_gpu_hour=res_t["upper"],
                                     origin=origin)
                curves.append(_score(sellable(res_t, rules), df, rules, demand)
                              .assign(policy=f"target {t:g}", target=t))
        items["origin"] = origin
        items["term_days"] = items["hours"] // 24
        res = sellable(items[items["product"] != "spot"], rules)
        naive = _naive(res, fc, rules_o, naive_discount)
        for name, pol in (("idlecap", res), ("naive", naive)):
            pol = pol.assign(gpus_offered=np.where(pol["offered"], pol["gpus_offered"], 0))
            scored = _score(pol, df, rules, demand).assign(policy=name)
            skipped += int((scored["observed"] < MIN_OBSERVED).sum()) if name == "idlecap" else 0
            offers.append(scored)
        sp = items[(items["product"] == "spot") & items["offered"]].copy()
        if len(sp):
            spots.append(_score_spot(sp, res, df, demand).assign(origin=origin))
        if on_window is not None:
            on_window(i + 1, len(origins))
    off = pd.concat(offers, ignore_index=True)
    off = off[off["observed"] >= MIN_OBSERVED].copy()  # the oracle nests only the windows that are scored
    off["oracle_gpu_hours"] = pd.concat([oracle_gpu_hours(g) for _, g in off.groupby("policy")]).reindex(off.index)
    spot = pd.concat(spots, ignore_index=True) if spots else pd.DataFrame()
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    if len(curve):
        curve = curve[curve["observed"] >= MIN_OBSERVED].copy()
        curve["oracle_gpu_hours"] = pd.concat([oracle_gpu_hours(g) for _, g in curve.groupby("policy")]) \
            .reindex(curve.index)
    return PricingBacktestReport(off, spot, summarize(off, spot), list(origins), skipped, curve)


def _score_spot(sp: pd.DataFrame, res: pd.DataFrame, actual: pd.DataFrame, demand: DemandModel) -> pd.DataFrame:
    """Per spot block: was anything reclaimed (idle < reserved + spot offered in some hour)?"""
    pools = sorted(sp["pool"].unique())
    hours = pd.date_range(sp["start"].min(), sp["end"].max(), freq="h", inclusive="left")
    held = reserved_in_hours(res[res["offered"]], pools, hours)
    a = actual.assign(_m=sample_min(actual)).set_index(["unique_id", "ds"])
    y_all, m_all = a["y"], a["_m"]
    out = []
    for r in sp.itertuples(index=False):
        hs = pd.date_range(r.start, r.end, freq="h", inclusive="left")
        idx = pd.MultiIndex.from_product([[r.pool], hs])
        y, ymin = y_all.reindex(idx).to_numpy(float), m_all.reindex(idx).to_numpy(float)
        if np.isfinite(y).mean() < MIN_OBSERVED:
            continue
        R = held[pools.index(r.pool), hours.get_indexer(hs)]
        value = getattr(r, "risk_value", 1.0)
        value = 1.0 if value is None or not np.isfinite(value) else value
        want = demand.curve(r.gpu_model, "spot").gpus(r.price_per_gpu_hour, r.reference_price * value, r.gpus_total)
        sold = min(float(want), r.gpus_offered)
        ok = np.isfinite(y)
        delivered = np.clip(y[ok] - R[ok], 0, sold).sum() * len(hs) / ok.sum()
        out.append({"pool": r.pool, "start": r.start, "gpus_offered": r.gpus_offered,
                    "interruption_risk": r.interruption_risk,
                    "reclaimed": bool((ymin[ok] < R[ok] + r.gpus_offered).any()),  # at any sample
                    "reclaimed_hourly": bool((y[ok] < R[ok] + r.gpus_offered).any()),
                    "revenue": r.price_per_gpu_hour * delivered})
    return pd.DataFrame(out)


def summarize(off: pd.DataFrame, spot: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (policy, term), g in list(off.groupby(["policy", "term_days"])) + [((p, "all"), g) for p, g in off.groupby("policy")]:
        offered = g["offered_gpu_hours"].sum()
        idle = g.drop_duplicates(["origin", "pool", "start", "end"])["real_idle_gpu_hours"].sum()
        if term == "all":  # the union of windows: at each origin and pool, its longest window
            w = g.sort_values("term_days").drop_duplicates(["origin", "pool"], keep="last")
            idle = w["real_idle_gpu_hours"].sum()
        if term == "all":  # tranches against the nested oracle
            oracle = g["oracle_gpu_hours"].sum() if "oracle_gpu_hours" in g else np.nan
            shown, safe = offered, g["safe_gpu_hours"].sum()
        else:  # the whole promise standing in each window of this term against the window's hindsight floor
            w = window_measures(g) if "base" in g else None
            oracle = w["window_oracle_gpu_hours"].sum() if w is not None else np.nan
            shown = w["window_offered_gpu_hours"].sum() if w is not None else np.nan
            safe = w["window_safe_gpu_hours"].sum() if w is not None else np.nan
        rows.append({
            "policy": policy, "term": term if term == "all" else f"{term}d", "offers": int((g["gpus_offered"] > 0).sum()),
            "offered_gpu_hours": offered, "safety": g["safe_gpu_hours"].sum() / offered if offered else np.nan,
            "safety_hourly": g["safe_gpu_hours_hourly"].sum() / offered if offered and "safe_gpu_hours_hourly" in g
            else np.nan,
            "yield": offered / idle if idle else np.nan, "oracle_gpu_hours": oracle,
            "achievable": shown / oracle if oracle else np.nan,
            "safe_achievable": safe / oracle if oracle else np.nan,
            "revenue_gross": g["revenue_gross"].sum(), "penalties": g["penalties"].sum(),
            "revenue_net": g["revenue_net"].sum(),
        })
    out = pd.DataFrame(rows)
    if len(spot):
        out = pd.concat([out, pd.DataFrame([{
            "policy": "idlecap", "term": "spot", "offers": len(spot), "offered_gpu_hours": np.nan,
            "safety": 1 - spot["reclaimed"].mean(), "safety_hourly": 1 - spot["reclaimed_hourly"].mean(),
            "yield": np.nan, "revenue_gross": spot["revenue"].sum(),
            "penalties": 0.0, "revenue_net": spot["revenue"].sum(),
            "predicted_risk": spot["interruption_risk"].mean(), "realized_risk": spot["reclaimed"].mean(),
        }])], ignore_index=True)
    return out


def target_curve(curve: pd.DataFrame, origins: list[pd.Timestamp], early_share: float = 0.5) -> pd.DataFrame:
    """Safety, yield and achievable of reserved sizing per break target, on the early origins, the
    later ones and all (from `PricingBacktestReport.curve`)."""
    if curve.empty:
        return pd.DataFrame()
    k = max(1, int(round(len(origins) * early_share)))
    split = {"early": set(origins[:k]), "later": set(origins[k:])}
    rows = []
    for t, g in curve.groupby("target"):
        for name, part in (("early", g[g["origin"].isin(split["early"])]), ("later", g[g["origin"].isin(split["later"])]),
                           ("all", g)):
            if part.empty:
                continue
            s = summarize(part.assign(policy="x"), pd.DataFrame())
            a = s[s["term"] == "all"].iloc[0]
            rows.append({"target": t, "origins": name, "offered_gpu_hours": a["offered_gpu_hours"],
                         "safety": a["safety"], "yield": a["yield"], "achievable": a["achievable"],
                         "safe_achievable": a["safe_achievable"],
                         "leases_broken": int(((part["gpus_offered"] > 0)
                                               & (part["real_min"] < part["base"] + part["gpus_offered"])).sum()),
                         "leases": int((part["gpus_offered"] > 0).sum())})
    return pd.DataFrame(rows)


def choose_target(table: pd.DataFrame, safety_bar: float = 0.97) -> float | None:
    """The break target that sells the most on the early origins with reserved safety at or above
    the bar (None: none does); among targets selling the same (the newsvendor level binds above
    some target), the smallest."""
    e = table[(table["origins"] == "early") & (table["safety"] >= safety_bar)].copy()
    if e.empty:
        return None
    best = e["offered_gpu_hours"].max()
    return float(e.loc[e["offered_gpu_hours"] >= best - 1e-6, "target"].min())


SIZE_BANDS = (0, 16, 64, 256, np.inf)


def by_pool_size(off: pd.DataFrame) -> pd.DataFrame:
    """Reserved safety, yield and achievable per policy and pool size band (GPUs): a rule that only
    works for small pools, or only sells the big ones, shows here."""
    if off.empty:
        return pd.DataFrame()
    labels = [f"{int(a)+1}-{int(b)}" if np.isfinite(b) else f"{int(a)+1}+" for a, b in zip(SIZE_BANDS[:-1], SIZE_BANDS[1:])]
    band = pd.cut(off["gpus_total"], list(SIZE_BANDS), labels=labels)
    rows = []
    for (policy, b), g in off.groupby([off["policy"], band], observed=True):
        s = summarize(g, pd.DataFrame())
        a = s[s["term"] == "all"].iloc[0]
        rows.append({"policy": policy, "pool_gpus": str(b), "pools": g["pool"].nunique(),
                     "offered_gpu_hours": a["offered_gpu_hours"], "safety": a["safety"], "yield": a["yield"],
                     "achievable": a["achievable"]})
    return pd.DataFrame(rows)
