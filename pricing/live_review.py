"""Last week's promises against what happened: the live check a pricing team reads every night.

Spot: each block is judged on the sheet that was live when it started (a later sheet re-priced
the blocks after it), and counts as interrupted when, at any sample of the block, fewer GPUs
were idle than that sheet's reserved promise standing in the hour plus the block's GPUs (the
backtest's rule, on live data). Reserved: a lease is kept when every sample of its window had
at least its whole promise idle (its tranche on top of the longer terms' that start with it).
Windows under 75% observed are not judged. Judged only on the sheets' own offers: telemetry
cannot see which leases customers bought.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pricing.backtest import MIN_OBSERVED, sample_min

HOUR = pd.Timedelta(hours=1)


def _hours(w: pd.DataFrame) -> pd.DataFrame:
    """One row per window x hour it covers (`w` has pool, start, hours; its index names the window)."""
    n = w["hours"].astype(int).to_numpy()
    rep = w.loc[w.index.repeat(n)]
    step = np.concatenate([np.arange(k) for k in n]) if len(n) else np.zeros(0, int)
    ds = (pd.to_datetime(rep["start"], utc=True).astype("datetime64[ns, UTC]").reset_index(drop=True)
          + pd.to_timedelta(step, unit="h"))
    return pd.DataFrame({"w": rep.index.to_numpy(), "pool": rep["pool"].to_numpy(), "ds": ds})


def _reserved_held(res: pd.DataFrame) -> pd.DataFrame:
    """GPUs each sheet's reserved offers promise in each (version, pool, hour)."""
    if res.empty:
        return pd.DataFrame(columns=["version", "pool", "ds", "held"])
    h = _hours(res)
    h["version"] = res.loc[h["w"], "version"].to_numpy()
    h["held"] = res.loc[h["w"], "gpus_offered"].to_numpy(float)
    return h.groupby(["version", "pool", "ds"], as_index=False)["held"].sum()


def outcomes(items: pd.DataFrame, actual: pd.DataFrame, until: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(spot blocks, reserved leases) that ended by `until`, each with its outcome.

    items: warehouse.sheets.items_live_between; actual: unique_id, ds, y, y_min."""
    it = items.copy()
    for c in ("start", "end", "valid_from", "live_until"):
        it[c] = pd.to_datetime(it[c], utc=True)
    it = it[it["gpus_offered"] > 0].reset_index(drop=True)
    a = actual.assign(ds=pd.to_datetime(actual["ds"], utc=True).astype("datetime64[ns, UTC]"), m=sample_min(actual))[["unique_id", "ds", "y", "m"]]
    a = a.rename(columns={"unique_id": "pool"})
    # What stands under a window is every reserved promise of its sheet, running or ended: a 7-day
    # lease still running at `until` held its GPUs under last week's spot blocks and 1-day leases.
    res = it[it["product"] != "spot"].copy()
    held = _reserved_held(res.reset_index(drop=True))
    # the GPUs of longer terms that start together sit under a tranche
    res["term_hours"] = res["hours"]
    res = res.sort_values(["version", "pool", "start", "term_hours"], ascending=[True, True, True, False])
    res["base"] = res.groupby(["version", "pool", "start"])["gpus_offered"].cumsum() - res["gpus_offered"]
    ended = it["end"] <= until  # judged: only what has ended
    spot = it[ended & (it["product"] == "spot") & (it["live_until"].isna() | (it["start"] < it["live_until"]))]
    res = res[res["end"] <= until]
    out = []
    for kind, w in (("spot", spot), ("reserved", res)):
        if w.empty:
            out.append(pd.DataFrame())
            continue
        h = _hours(w).merge(a, on=["pool", "ds"], how="left")
        if kind == "spot":
            h["version"] = w.loc[h["w"], "version"].to_numpy()
            h = h.merge(held, on=["version", "pool", "ds"], how="left")
            h["short"] = h["m"] - h["held"].fillna(0.0)
        else:
            h["short"] = h["m"] - w.loc[h["w"], "base"].to_numpy(float)
        g = pd.DataFrame({"observed": h["y"].notna().groupby(h["w"]).mean(),  # vectorized: no per-window lambda
                          "slack_min": h.groupby("w")["short"].min()})
        r = w.join(g)
        r = r[r["observed"] >= MIN_OBSERVED]
        if kind == "spot":
            r = r.assign(interrupted=r["slack_min"] < r["gpus_offered"])
        else:
            r = r.assign(kept=r["slack_min"] >= r["gpus_offered"],
                         safe_gpu_hours=np.clip(r["slack_min"], 0, r["gpus_offered"]) * r["hours"],
                         offered_gpu_hours=r["gpus_offered"] * r["hours"])
        out.append(r.reset_index(drop=True))
    return out[0], out[1]


def week_metrics(spot: pd.DataFrame, reserved: pd.DataFrame, errors: pd.DataFrame | None) -> dict[str, float]:
    """Metric names for the night's parent run (`live.*`): NaN-free, counts included so a reviewer
    sees when a week had too little to judge."""
    m: dict[str, float] = {"live.spot_blocks_ended": float(len(spot)),
                           "live.reserved_leases_ended": float(len(reserved))}
    if len(spot):
        m["live.spot_risk_published"] = float(spot["interruption_risk"].mean())
        m["live.spot_interrupted"] = float(spot["interrupted"].mean())
    if len(reserved):
        m["live.reserved_kept"] = float(reserved["kept"].mean())
        m["live.reserved_gpu_hours_kept"] = float(reserved["safe_gpu_hours"].sum() / reserved["offered_gpu_hours"].sum())
    if errors is not None and len(errors) and errors["n_common"].sum() > 0:
        n = errors["n_common"].to_numpy(float)
        w = lambda c: float(np.nansum(errors[c].to_numpy(float) * n) / n.sum())  # noqa: E731
        m.update({"live.forecast_hours": float(n.sum()), "live.forecast_mae": w("mae_common"),
                  "live.persistence_mae": w("mae_persistence"), "live.snaive_mae": w("mae_snaive_common")})
    return m
