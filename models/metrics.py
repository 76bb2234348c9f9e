"""Forecast metrics on backtest frames: MAE, MASE, pinball loss, interval coverage and width.

MASE divides each error by the in-sample MAE of seasonal naive on that pool's history before
the error's own origin (the data that origin's models were fit on), so pools of different size
are comparable. A pool that barely moved in-sample would get a near-zero scale and an
unbounded MASE, so the scale is floored at 1% of the pool's capacity (an error below that is
below anything pricing acts on). Because near-constant
pools have a tiny scale and dominate a mean, the overall table reports MASE mean and median
over pools, and MAE relative to persistence and to seasonal naive on exactly the same points.
Hours where a planned run starts or ends (`event`) are reported apart from the rest.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from models.base import QCOLS, QUANTILES

_EPS = 1e-9


SCALE_FLOOR_SHARE = 0.01


def insample_scale(df: pd.DataFrame, cutoffs, season: int = 24) -> pd.DataFrame:
    """unique_id, cutoff, scale: mean |y_t - y_{t-season}| over observed pairs before each cutoff."""
    d = df[["unique_id", "ds", "y", "gpus_total"]]
    lag = d[["unique_id", "ds", "y"]].assign(ds=d["ds"] + pd.Timedelta(hours=season)).rename(columns={"y": "y_lag"})
    j = d.merge(lag, on=["unique_id", "ds"], how="inner").dropna(subset=["y", "y_lag"])
    j["ae"] = (j["y"] - j["y_lag"]).abs()
    out = []
    for c in pd.DatetimeIndex(sorted(set(cutoffs))):
        jc = j[j["ds"] < c]
        g = jc.groupby("unique_id").agg(scale=("ae", "mean"), cap=("gpus_total", "last"))
        g["scale"] = np.maximum(g["scale"], SCALE_FLOOR_SHARE * g["cap"])
        out.append(g[["scale"]].reset_index().assign(cutoff=c))
    return pd.concat(out, ignore_index=True)[["unique_id", "cutoff", "scale"]]


def pinball(y: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Mean pinball loss over the 7 quantiles, per row."""
    tau = np.asarray(QUANTILES)[None, :]
    d = y[:, None] - q
    return np.maximum(tau * d, (tau - 1.0) * d).mean(axis=1)


def _point_metrics(cv: pd.DataFrame) -> pd.DataFrame:
    y = cv["y"].to_numpy(float)
    q = cv[QCOLS].to_numpy(float)
    return cv.assign(
        ae=np.abs(y - cv["mean"].to_numpy(float)),
        pl=pinball(y, q),
        in80=((y >= q[:, 1] - _EPS) & (y <= q[:, 5] + _EPS)).astype(float),
        in90=((y >= q[:, 0] - _EPS) & (y <= q[:, 6] + _EPS)).astype(float),
        w80=q[:, 5] - q[:, 1],
    )


def _summary(g: pd.core.groupby.DataFrameGroupBy) -> pd.DataFrame:
    out = g.agg(
        n=("ae", "size"), mae=("ae", "mean"), pinball=("pl", "mean"),
        coverage80=("in80", "mean"), coverage90=("in90", "mean"), width80=("w80", "mean"),
    )
    return out


def evaluate(
    cv: pd.DataFrame,
    scale: pd.DataFrame,
    naive: str = "naive",
    seasonal_naive: str = "snaive_24",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per_pool, overall) metric tables from a cross_validation frame.

    per_pool: model, unique_id, n, mae, mase, pinball, coverage80, coverage90, width80.
    overall: one row per model with mae, mae_vs_naive, mae_vs_snaive (ratios on the same points),
    mase_mean, mase_median, pinball, coverage80/90, width80, and mae/coverage80 on event hours
    and on the rest.
    """
    pm = _point_metrics(cv).merge(scale, on=["unique_id", "cutoff"], how="left")
    pm["se"] = pm["ae"] / pm["scale"].clip(lower=_EPS)
    per_pool = _summary(pm.groupby(["model", "unique_id"])).reset_index()
    per_pool["mase"] = pm.groupby(["model", "unique_id"])["se"].mean().to_numpy()
    overall = _summary(pm.groupby("model"))
    key = ["unique_id", "ds", "cutoff"]
    for ref, col in ((naive, "mae_vs_naive"), (seasonal_naive, "mae_vs_snaive")):
        base = pm[pm["model"] == ref][key + ["ae"]].rename(columns={"ae": "ae_ref"})
        if base.empty:
            overall[col] = np.nan
            continue
        j = pm.merge(base, on=key, how="inner")
        sums = j.groupby("model")[["ae", "ae_ref"]].sum()
        overall[col] = sums["ae"] / sums["ae_ref"].clip(lower=_EPS)
    mase = per_pool.groupby("model")["mase"]
    overall["mase_mean"] = mase.mean()
    overall["mase_median"] = mase.median()
    ev = pm.groupby(["model", "event"]).agg(mae=("ae", "mean"), cov80=("in80", "mean"), n=("ae", "size")).unstack("event")
    for flag, tag in ((True, "event"), (False, "rest")):
        overall[f"mae_{tag}"] = ev[("mae", flag)] if ("mae", flag) in ev else np.nan
        overall[f"coverage80_{tag}"] = ev[("cov80", flag)] if ("cov80", flag) in ev else np.nan
        overall[f"n_{tag}"] = ev[("n", flag)].fillna(0).astype(int) if ("n", flag) in ev else 0
    cols = ["n", "mae", "mae_vs_naive", "mae_vs_snaive", "mase_mean", "mase_median", "pinball",
            "coverage80", "coverage90", "width80", "mae_event", "mae_rest", "coverage80_event", "n_event"]
    return per_pool, overall[cols].reset_index().sort_values("mase_median", ignore_index=True)
