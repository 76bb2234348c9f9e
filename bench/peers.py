"""Peer forecasters for the forecasting benchmark: Nixtla statsforecast and mlforecast, defaults.

Bench-only dependencies (pinned in bench/constraints-peers.txt, not in the project's own
constraints): install them into the project venv with

    .venv/bin/python -m pip install -c constraints.txt -c bench/constraints-peers.txt \
        statsforecast mlforecast

Both functions take a Nixtla long pandas frame `unique_id, ds, y` (hourly; `ds` naive, taken as
UTC, or tz-aware, converted to UTC) and return `(cv, fit_predict_seconds)`:

* `cv` is long by model with exactly the columns
  `unique_id, ds, cutoff, y, model, mean, lo80, hi80, lo90, hi90`; `ds` and `cutoff` come back in
  the input's convention (tz-aware UTC if the input was tz-aware, naive otherwise);
* `fit_predict_seconds` is the wall time of the library's `cross_validation` call alone (fits
  and forecasts of every window, including any JIT compile it triggers: none for these models),
  not the import of the library (~3 s each, numba), the data preparation or the reshaping.

The peers, with the libraries' defaults:

* `statsforecast_cv`: `MSTL(season_length=[24, 168])` (default trend forecaster, AutoETS
  non-seasonal) and `SeasonalNaive(24)`; optional `AutoETS(season_length=24)`
  (`models=("mstl", "seasonal_naive", "autoets")`). Intervals are the models' own.
* `mlforecast_cv`: `LGBMRegressor(verbosity=-1)`, lags 1/24/168, date features `hour` and
  `day_of_week` (same values as `dayofweek`, which pandas 3 deprecates), recursive strategy; intervals are conformal (`PredictionIntervals(n_windows=2, h=h)`).

Smoke run: `.venv/bin/python bench/peers.py --pools 100 --days 90` (see `--help`).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import pandas as pd

__all__ = ["CV_COLUMNS", "LEVELS", "statsforecast_cv", "mlforecast_cv", "mae_by_model"]

CV_COLUMNS = ["unique_id", "ds", "cutoff", "y", "model", "mean", "lo80", "hi80", "lo90", "hi90"]
LEVELS = (80, 90)
FREQ = "h"
_HOUR = pd.Timedelta(hours=1)


# --------------------------------------------------------------------------- input / output


def _prepare(df: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """Nixtla-ready copy of `df`: naive UTC datetime64[ns] ds, float64 y, object ids, sorted.

    Returns (frame, input_was_tz_aware). Raises ValueError on missing columns, duplicate
    (unique_id, ds), missing hours inside a series, or NaN y: both libraries work on positions,
    so a gap would silently misalign lags and seasons.
    """
    missing = {"unique_id", "ds", "y"} - set(df.columns)
    if missing:
        raise ValueError(f"missing columns: {sorted(missing)}")
    ds = pd.to_datetime(df["ds"])
    aware = isinstance(ds.dtype, pd.DatetimeTZDtype)
    if aware:
        ds = ds.dt.tz_convert("UTC").dt.tz_localize(None)
    out = pd.DataFrame(
        {
            # Plain object ids and ns timestamps: the forms the Nixtla code paths were written
            # for (pandas 3 defaults to the `str` dtype and to microsecond resolution).
            "unique_id": df["unique_id"].astype(str).astype(object).to_numpy(),
            "ds": ds.astype("datetime64[ns]").to_numpy(),
            "y": pd.to_numeric(df["y"]).astype("float64").to_numpy(),
        }
    )
    out = out.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    if out["y"].isna().any():
        raise ValueError("y has NaN values")
    if out.duplicated(["unique_id", "ds"]).any():
        raise ValueError("duplicate (unique_id, ds) rows")
    step = out.groupby("unique_id", sort=False)["ds"].diff().dropna()
    if not (step == _HOUR).all():
        raise ValueError("every series must be a regular hourly sequence with no missing hours")
    return out, aware


def _check_length(df: pd.DataFrame, h: int, n_windows: int, step_size: int, need: int) -> None:
    test = h + (n_windows - 1) * step_size
    shortest = int(df.groupby("unique_id", sort=False).size().min())
    if shortest - test < need:
        raise ValueError(
            f"shortest series has {shortest} hours; the CV test span is {test} h and the peer "
            f"needs >= {need} h of training before the first cutoff"
        )


def _normalize(cv: pd.DataFrame, aliases: Sequence[str], aware: bool) -> pd.DataFrame:
    """Wide Nixtla CV output (`<alias>`, `<alias>-lo-80`, ...) -> long CV_COLUMNS frame."""
    if "unique_id" not in cv.columns:  # older statsforecast kept the ids in the index
        cv = cv.reset_index()
    parts = []
    for a in aliases:
        part = pd.DataFrame(
            {
                "unique_id": cv["unique_id"].astype(str).to_numpy(),
                "ds": cv["ds"].to_numpy(),
                "cutoff": cv["cutoff"].to_numpy(),
                "y": cv["y"].astype("float64").to_numpy(),
                "model": a,
                "mean": cv[a].astype("float64").to_numpy(),
            }
        )
        for lv in LEVELS:
            part[f"lo{lv}"] = cv[f"{a}-lo-{lv}"].astype("float64").to_numpy()
            part[f"hi{lv}"] = cv[f"{a}-hi-{lv}"].astype("float64").to_numpy()
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["unique_id"] = out["unique_id"].astype("str")
    for c in ("ds", "cutoff"):
        out[c] = pd.to_datetime(out[c])
        if aware:
            out[c] = out[c].dt.tz_localize("UTC")
    out = out.sort_values(["model", "unique_id", "cutoff", "ds"], kind="stable")
    return out[CV_COLUMNS].reset_index(drop=True)


# --------------------------------------------------------------------------- peers


def statsforecast_cv(
    df: pd.DataFrame,
    h: int,
    n_windows: int,
    step_size: int,
    season_length: int = 24,
    models: Sequence[str] = ("mstl", "seasonal_naive"),
    n_jobs: int = -1,
) -> tuple[pd.DataFrame, float]:
    """StatsForecast cross-validation of MSTL([24, 168]) + SeasonalNaive(24) (+ AutoETS(24)).

    `season_length` is the daily season (24 for hourly data); MSTL also gets the weekly one
    (7 x season_length). Intervals at 80 and 90 % are the models' own (not conformal).
    """
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS, SeasonalNaive

    factories = {
        "mstl": lambda: MSTL(season_length=[season_length, 7 * season_length]),
        "seasonal_naive": lambda: SeasonalNaive(season_length=season_length),
        "autoets": lambda: AutoETS(season_length=season_length),
    }
    unknown = set(models) - set(factories)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; choose from {sorted(factories)}")
    data, aware = _prepare(df)
    # MSTL's STL needs two full weekly cycles.
    _check_length(data, h, n_windows, step_size, need=2 * 7 * season_length + 1)
    est = [factories[m]() for m in models]
    sf = StatsForecast(models=est, freq=FREQ, n_jobs=n_jobs)
    t0 = time.perf_counter()
    cv = sf.cross_validation(
        df=data, h=h, n_windows=n_windows, step_size=step_size, level=list(LEVELS)
    )
    seconds = time.perf_counter() - t0
    return _normalize(cv, [repr(m) for m in est], aware), seconds


def mlforecast_cv(
    df: pd.DataFrame,
    h: int,
    n_windows: int,
    step_size: int,
    conformal_windows: int = 2,
    n_jobs: int | None = None,
) -> tuple[pd.DataFrame, float]:
    """MLForecast cross-validation of LGBMRegressor(verbosity=-1), lags 1/24/168, hour + dow.

    Recursive strategy (the default). 80/90 % intervals are conformal, calibrated on
    `conformal_windows` windows of `h` hours inside each CV training set, so every CV window
    fits LightGBM 1 + conformal_windows times.

    `n_jobs` is LightGBM's thread count; None keeps its default (OpenMP: every core). On a
    shared 2-core machine whose cores are busy with other processes, multi-threaded LightGBM
    was ~18x slower (100 pools: 170 s vs 9.6 s with 1 thread): OpenMP threads wait on each
    other at every split. Pass 1 there, and give the project's own LightGBM the same count.
    """
    from lightgbm import LGBMRegressor
    from mlforecast import MLForecast
    from mlforecast.utils import PredictionIntervals

    data, aware = _prepare(df)
    # lag 168 needs 168 h of history; the conformal windows come out of the training span too.
    _check_length(data, h, n_windows, step_size, need=168 + conformal_windows * h + 1)
    mlf = MLForecast(
        models=[LGBMRegressor(verbosity=-1, **({} if n_jobs is None else {"n_jobs": n_jobs}))],
        freq=FREQ,
        lags=[1, 24, 168],
        date_features=["hour", "day_of_week"],
    )
    t0 = time.perf_counter()
    cv = mlf.cross_validation(
        df=data,
        n_windows=n_windows,
        h=h,
        step_size=step_size,
        prediction_intervals=PredictionIntervals(n_windows=conformal_windows, h=h),
        level=list(LEVELS),
    )
    seconds = time.perf_counter() - t0
    return _normalize(cv, ["LGBMRegressor"], aware), seconds


def mae_by_model(cv: pd.DataFrame) -> pd.DataFrame:
    """MAE and empirical 80/90 % interval coverage per model over a normalized CV frame."""
    err = (cv["y"] - cv["mean"]).abs()
    cov80 = (cv["y"] >= cv["lo80"]) & (cv["y"] <= cv["hi80"])
    cov90 = (cv["y"] >= cv["lo90"]) & (cv["y"] <= cv["hi90"])
    return (
        pd.DataFrame({"model": cv["model"], "mae": err, "cov80": cov80, "cov90": cov90})
        .groupby("model", sort=True)
        .mean()
        .reset_index()
    )


# --------------------------------------------------------------------------- smoke run


def _fleet(pools: int, days: int, nodes: int, seed: int) -> pd.DataFrame:
    from warehouse.synthetic import FleetSpec, generate_pool_busy

    t = generate_pool_busy(FleetSpec(pools=pools, days=days, nodes_per_pool=nodes, seed=seed))
    return pd.DataFrame(
        {"unique_id": t["unique_id"], "ds": t["ds"], "y": t["gpus_total"] - t["busy_gpus"]}
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pools", type=int, default=100)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--h", type=int, default=168)
    ap.add_argument("--n-windows", type=int, default=2)
    ap.add_argument("--step-size", type=int, default=168)
    ap.add_argument(
        "--peers",
        default="statsforecast,mlforecast",
        help="comma list of: statsforecast, mlforecast, autoets (AutoETS(24) alone)",
    )
    ap.add_argument("--n-jobs", type=int, default=-1, help="StatsForecast processes")
    ap.add_argument(
        "--lgbm-jobs", type=int, default=None, help="LightGBM threads (default: its own, all cores)"
    )
    ap.add_argument("--out", help="write the concatenated CV frame to this parquet file")
    a = ap.parse_args(argv)

    t = time.perf_counter()
    df = _fleet(a.pools, a.days, a.nodes, a.seed)
    print(f"fleet: {a.pools} pools x {a.days} d = {len(df):,} rows ({time.perf_counter() - t:.1f} s)")
    runs = {
        "statsforecast": lambda: statsforecast_cv(
            df, a.h, a.n_windows, a.step_size, n_jobs=a.n_jobs
        ),
        "autoets": lambda: statsforecast_cv(
            df, a.h, a.n_windows, a.step_size, models=("autoets",), n_jobs=a.n_jobs
        ),
        "mlforecast": lambda: mlforecast_cv(
            df, a.h, a.n_windows, a.step_size, n_jobs=a.lgbm_jobs
        ),
    }
    frames = []
    for name in a.peers.split(","):
        t = time.perf_counter()
        cv, secs = runs[name.strip()]()
        wall = time.perf_counter() - t
        assert list(cv.columns) == CV_COLUMNS
        frames.append(cv)
        print(f"\n{name}: cross_validation {secs:.1f} s (wall incl. prep/reshape {wall:.1f} s), "
              f"{len(cv):,} rows")
        print(mae_by_model(cv).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if a.out:
        pd.concat(frames, ignore_index=True).to_parquet(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
