"""Benchmark: fit + rolling-origin backtest on a synthetic fleet, idlecap models vs Nixtla peers.

Workload (defaults): 1,000 pools x 90 days hourly, planned runs drive idle capacity; backtest
h = 168 h from 2 origins one week apart (expanding window). Every model sees the same frame
and is scored on the same points. Peers (statsforecast, mlforecast with their defaults) are
bench-only dependencies: `make bench-forecast` installs them from bench/constraints-peers.txt.

Prints one table: seconds (fit + backtest, all windows), MAE, MAE vs seasonal naive, MASE
(median over pools; scale = in-sample seasonal naive before each origin, floored at 1% of
capacity), 80% / 90% interval coverage, and MAE on the hours where a planned run starts or ends.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from features.planned import event_hours  # noqa: E402
from models.backtest import cross_validation  # noqa: E402
from models.lgbm import LGBMDirect  # noqa: E402
from models.metrics import insample_scale  # noqa: E402
from models.naive import Naive, SeasonalNaive  # noqa: E402
from models.seasonal import MSTLForecaster  # noqa: E402
from warehouse.synthetic import FleetSpec, generate_calendar, generate_pool_busy  # noqa: E402


def fleet(pools: int, days: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    spec = FleetSpec(pools=pools, days=days, seed=seed, nodes_per_pool=16, plan_horizon_days=14)
    cal = generate_calendar(spec)
    truth = generate_pool_busy(spec, cal)
    df = truth.assign(y=(truth["gpus_total"] - truth["busy_gpus"]).astype(float))
    df["gpu_model"] = df["unique_id"].str.split("-").str[-1].str.upper()
    return df[["unique_id", "ds", "y", "gpus_total", "gpu_model"]], cal


def score(cv: pd.DataFrame, scale: pd.DataFrame, events: pd.DataFrame, snaive_ae: pd.Series | None) -> dict:
    """Metrics of one model's cv rows: needs unique_id, ds, cutoff (first forecast hour), y, mean, lo/hi."""
    j = cv.drop(columns=["event", "scale"], errors="ignore").merge(scale, on=["unique_id", "cutoff"], how="left").merge(events, on=["unique_id", "ds"], how="left")
    j["event"] = j["event"].fillna(False).astype(bool)
    ae = (j["y"] - j["mean"]).abs()
    out = {
        "points": len(j),
        "mae": ae.mean(),
        "mase_median": (ae / j["scale"]).groupby(j["unique_id"]).mean().median(),
        "coverage80": ((j["y"] >= j["lo80"]) & (j["y"] <= j["hi80"])).mean(),
        "coverage90": ((j["y"] >= j["lo90"]) & (j["y"] <= j["hi90"])).mean(),
        "mae_event": ae[j["event"]].mean(),
    }
    if snaive_ae is not None:
        key = pd.MultiIndex.from_frame(j[["unique_id", "ds", "cutoff"]])
        ref = snaive_ae.reindex(key).to_numpy()
        ok = ~np.isnan(ref)
        out["mae_vs_snaive"] = ae.to_numpy()[ok].sum() / ref[ok].sum()
    return out


def ours(df, cal, h, n_windows, step, which, processes, lgbm_threads) -> dict[str, pd.DataFrame]:
    models = {
        "naive": Naive(),
        "snaive_24": SeasonalNaive(24),
        "snaive_168": SeasonalNaive(168),
        "mstl": MSTLForecaster(n_jobs=processes),
        "lgbm": LGBMDirect(horizon=h, n_jobs=lgbm_threads),
        "lgbm_nocal": LGBMDirect(horizon=h, use_calendar=False, n_jobs=lgbm_threads),
    }
    out = {}
    for name, m in models.items():
        if name not in which:
            continue
        t0 = time.perf_counter()
        cv = cross_validation([m], df, cal, h=h, n_windows=n_windows, step=step)
        secs = time.perf_counter() - t0
        cv = cv.rename(columns={"q10": "lo80", "q90": "hi80", "q05": "lo90", "q95": "hi90"})
        out[f"idlecap {name}"] = (cv, secs)
        print(f"  idlecap {name}: {secs:.1f} s", flush=True)
    return out


def peers(df, h, n_windows, step, which, processes, lgbm_threads) -> dict[str, tuple[pd.DataFrame, float]]:
    try:
        import peers as p
    except ImportError as exc:  # peers not installed: say so, keep our numbers
        print(f"  peers skipped: {exc} (run `make bench-forecast` to install them)")
        return {}
    out = {}
    runs = []
    if "statsforecast" in which:
        runs.append(("statsforecast", p.statsforecast_cv, {"n_jobs": processes}))
    if "mlforecast" in which:
        runs.append(("mlforecast", p.mlforecast_cv, {"n_jobs": lgbm_threads}))
    for label, fn, kw in runs:
        try:
            cv, secs = fn(df[["unique_id", "ds", "y"]], h=h, n_windows=n_windows, step_size=step, **kw)
        except Exception as exc:  # noqa: BLE001 - a peer failing is a result to print, not a crash
            print(f"  {label} failed: {type(exc).__name__}: {exc}")
            continue
        cv = cv.copy()
        cv["ds"] = pd.to_datetime(cv["ds"], utc=True)
        cv["cutoff"] = pd.to_datetime(cv["cutoff"], utc=True) + pd.Timedelta(hours=1)  # Nixtla: last seen hour
        for model, g in cv.groupby("model"):
            out[f"{label} {model}"] = (g, secs / cv["model"].nunique())
        print(f"  {label}: {secs:.1f} s for {cv['model'].nunique()} model(s)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pools", type=int, default=1000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--h", type=int, default=168)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--step", type=int, default=168)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--processes", type=int, default=2, help="per-series models (MSTL, statsforecast)")
    ap.add_argument("--lgbm-threads", type=int, default=1,
                    help="LightGBM threads, ours and mlforecast's (1: OpenMP spins on a busy shared box)")
    ap.add_argument("--models", default="naive,snaive_24,snaive_168,mstl,lgbm,lgbm_nocal,statsforecast,mlforecast")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    which = set(a.models.split(","))
    t0 = time.perf_counter()
    df, cal = fleet(a.pools, a.days, a.seed)
    print(f"fleet: {a.pools} pools x {a.days} days = {len(df):,} pool-hours, {len(cal):,} plan rows "
          f"({time.perf_counter() - t0:.1f} s); backtest h={a.h}, {a.windows} windows, step {a.step} h; "
          f"{os.cpu_count()} cores, {platform.python_version()}", flush=True)
    results = ours(df, cal, a.h, a.windows, a.step, which, a.processes, a.lgbm_threads)
    results.update(peers(df, a.h, a.windows, a.step, which, a.processes, a.lgbm_threads))
    cutoffs = sorted({c for cv, _ in results.values() for c in cv["cutoff"].unique()})
    scale = insample_scale(df, cutoffs)
    events = event_hours(cal).assign(event=True)
    ref = results.get("idlecap snaive_24")
    snaive_ae = None
    if ref is not None:
        r = ref[0]
        snaive_ae = (r["y"] - r["mean"]).abs().set_axis(pd.MultiIndex.from_frame(r[["unique_id", "ds", "cutoff"]]))
    rows = []
    for name, (cv, secs) in results.items():
        rows.append({"model": name, "seconds": secs, **score(cv, scale, events, snaive_ae)})
    table = pd.DataFrame(rows).sort_values("mae")
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    if a.json:
        a.json.write_text(json.dumps(rows, default=float, indent=1))


if __name__ == "__main__":
    main()
