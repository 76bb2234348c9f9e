"""Rolling-origin backtests (Nixtla's `cross_validation` verb).

At every origin each forecaster is refit on history strictly before the origin (expanding, or
a sliding window of `window_size` hours) and given the calendar as it was known at the origin
(rows with known_at <= origin). Only observed hours are scored: masked or missing hours have
y = NaN and are left out, never counted as zero.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone

from features.panel import to_utc_hours
from features.planned import event_hours, normalize_calendar
from models.base import QCOLS, Forecaster


def rolling_origins(end: pd.Timestamp, h: int, n_windows: int, step: int) -> pd.DatetimeIndex:
    """Origins whose h-hour horizon ends at or before `end`, `step` hours apart, oldest first."""
    if n_windows < 1 or step < 1:
        raise ValueError("n_windows and step must be >= 1")
    last = end - pd.Timedelta(hours=h)
    return pd.DatetimeIndex([last - pd.Timedelta(hours=step * k) for k in range(n_windows - 1, -1, -1)])


def _pad_to(train: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    """Give every pool a (NaN) row for the hour before the origin, so forecasts start at the origin
    even when telemetry stopped earlier (the models then see the gap as missing data)."""
    last = origin - pd.Timedelta(hours=1)
    have = set(train.loc[train["ds"] == last, "unique_id"])
    tails = train.sort_values("ds").groupby("unique_id", as_index=False).last()
    tails = tails[~tails["unique_id"].isin(have)]
    if tails.empty:
        return train
    pad = tails.assign(ds=last, y=np.nan)
    if "y_min" in pad:  # nothing observed in the padded hour, at any grain
        pad["y_min"] = np.nan
    return pd.concat([train, pad[train.columns]], ignore_index=True)


def backtest_origins(
    df: pd.DataFrame, h: int = 24, n_windows: int = 7, step: int = 24, origins: pd.DatetimeIndex | None = None,
) -> pd.DatetimeIndex:
    """The origins a backtest scores (rolling from the end unless given), checked against the history."""
    ds = to_utc_hours(df["ds"])
    end = ds.max() + pd.Timedelta(hours=1)
    if origins is None:
        origins = rolling_origins(end, h, n_windows, step)
    origins = to_utc_hours(origins)
    if origins.min() <= ds.min():
        have = (end - ds.min()) / pd.Timedelta(hours=1)
        need = (end - origins.min()) / pd.Timedelta(hours=1)
        raise ValueError(
            f"not enough history to backtest: {have:.0f} h of telemetry ({ds.min():%Y-%m-%d %H:%M} to "
            f"{end:%Y-%m-%d %H:%M}), but {len(origins)} origin(s) {h} h ahead need more than {need:.0f} h; "
            "wait for more telemetry, or lower [forecast] backtest_windows / backtest_horizon_hours")
    return pd.DatetimeIndex(origins)


def _signature(m: Forecaster) -> str:
    return f"{type(m).__module__}.{type(m).__qualname__}:{sorted(m.get_params(deep=False).items())!r}"


def origin_forecasts(
    forecasters: Sequence[Forecaster], train: pd.DataFrame, known: pd.DataFrame, h: int,
) -> list[pd.DataFrame]:
    """Every forecaster's forecast from one origin, each distinct model fitted once.

    `ensemble` is the mean of an LGBM and an MSTL configured like the `lgbm` and `mstl`
    candidates: refitting them inside it paid the per-pool MSTL twice per origin. Here a model
    is fitted once per configuration, ensembles are combined from their members' forecasts and
    the short-lead anchor is applied after, which is what each would have computed alone."""
    from models.anchor import ShortLeadAnchor
    from models.ensemble import MeanEnsemble

    cache: dict[str, pd.DataFrame] = {}
    panel = None

    def raw(m: Forecaster) -> pd.DataFrame:
        key = _signature(m)
        if key not in cache:
            cache[key] = clone(m).fit(train, known).predict(h, X_df=known)
        return cache[key]

    out = []
    for f in forecasters:
        inner = f.forecaster if isinstance(f, ShortLeadAnchor) else f
        if isinstance(inner, MeanEnsemble):
            fc = inner.combine([raw(m) for m in inner.members])
        else:
            fc = raw(inner).copy()
        if isinstance(f, ShortLeadAnchor):
            if panel is None:
                from features.panel import panel_from_long

                panel = panel_from_long(train)
            fc = f.anchor(fc, panel)
        fc["model"] = f.name
        out.append(fc)
    return out


def backtest_origin(
    forecasters: Sequence[Forecaster],
    df: pd.DataFrame,
    calendar: pd.DataFrame | None,
    origin: pd.Timestamp,
    h: int = 24,
    window: str = "expanding",
    window_size: int | None = None,
) -> list[pd.DataFrame]:
    """One origin of every forecaster (shared fits, see `origin_forecasts`): a unit of work for a worker."""
    if window not in ("expanding", "sliding"):
        raise ValueError("window must be 'expanding' or 'sliding'")
    if window == "sliding" and not window_size:
        raise ValueError("a sliding window needs window_size (hours)")
    df = df.assign(ds=to_utc_hours(df["ds"]))
    origin = pd.Timestamp(origin)
    cal = normalize_calendar(calendar)
    lo = origin - pd.Timedelta(hours=window_size) if window == "sliding" else df["ds"].min()
    train = _pad_to(df[(df["ds"] < origin) & (df["ds"] >= lo)], origin)
    truth = df[(df["ds"] >= origin) & (df["ds"] < origin + pd.Timedelta(hours=h))]
    known = cal[cal["known_at"] <= origin]
    out = []
    for fc in origin_forecasts(forecasters, train, known, h):
        j = fc.merge(truth[["unique_id", "ds", "y", "gpus_total"]], on=["unique_id", "ds"], how="inner")
        j = j[j["y"].notna()]
        j.insert(2, "cutoff", origin)
        out.append(j)
    return out


def assemble_cv(pieces: Sequence[pd.DataFrame], calendar: pd.DataFrame | None) -> pd.DataFrame:
    """The backtest windows as one long frame with step and planned-event columns, in a fixed order
    (so the result does not depend on where or in which order the windows ran)."""
    cv = pd.concat(list(pieces), ignore_index=True)
    cv["step"] = ((cv["ds"] - cv["cutoff"]) // pd.Timedelta(hours=1)).astype(int) + 1
    events = event_hours(normalize_calendar(calendar)).assign(event=True)
    cv = cv.merge(events, on=["unique_id", "ds"], how="left")
    cv["event"] = cv["event"].fillna(False).astype(bool)
    cols = ["unique_id", "ds", "cutoff", "step", "model", "y", "mean", *QCOLS, "gpus_total", "event"]
    return cv[cols].sort_values(["model", "cutoff", "unique_id", "ds"], ignore_index=True)


def cross_validation(
    forecasters: Sequence[Forecaster],
    df: pd.DataFrame,
    calendar: pd.DataFrame | None = None,
    h: int = 24,
    n_windows: int = 7,
    step: int = 24,
    window: str = "expanding",
    window_size: int | None = None,
    origins: pd.DatetimeIndex | None = None,
    on_window: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Long frame unique_id, ds, cutoff, step, model, y, mean, q05..q95, gpus_total, event.

    In-process loop over origins; the nightly flow runs the same origins (`backtest_origin`) as
    tasks on its runner and joins them with `assemble_cv`."""
    if window not in ("expanding", "sliding"):
        raise ValueError("window must be 'expanding' or 'sliding'")
    if window == "sliding" and not window_size:
        raise ValueError("a sliding window needs window_size (hours)")
    df = df.assign(ds=to_utc_hours(df["ds"]))
    origins = backtest_origins(df, h, n_windows, step, origins)
    out: list[pd.DataFrame] = []
    total = len(origins) * len(forecasters)
    for origin in origins:
        out.extend(backtest_origin(forecasters, df, calendar, origin, h, window, window_size))
        if on_window is not None:
            for k, f in enumerate(forecasters, start=len(out) - len(forecasters) + 1):
                on_window(k, total, f.name)
    return assemble_cv(out, calendar)


def add_selected(cv: pd.DataFrame, candidates: Sequence[str], metric: str = "mae", name: str = "selected") -> pd.DataFrame:
    """Append the per-pool selection as a model, chosen honestly: window k uses windows < k.

    At each cutoff a pool takes the candidate with the lowest MAE on that pool over the scored
    hours before that cutoff; a pool with nothing earlier takes the first candidate. Choosing on
    the same windows it is scored on would flatter the selection.
    """
    sub = cv[cv["model"].isin(candidates)].copy()
    sub["ae"] = (sub["y"] - sub["mean"]).abs()
    cutoffs = np.sort(sub["cutoff"].unique())
    picks = []
    for c in cutoffs:
        pools = pd.DataFrame({"unique_id": sub.loc[sub["cutoff"] == c, "unique_id"].unique()})
        # only errors on hours before this cutoff: with h > step, earlier windows reach past it
        past = sub[(sub["cutoff"] < c) & (sub["ds"] < c)]
        best = (past.groupby(["unique_id", "model"], as_index=False)["ae"].mean()
                .sort_values(["unique_id", "ae"]).drop_duplicates("unique_id")[["unique_id", "model"]])
        chosen = pools.merge(best, on="unique_id", how="left")
        chosen["model"] = chosen["model"].fillna(candidates[0])  # nothing earlier: the first candidate
        chosen["cutoff"] = c
        picks.append(chosen)
    pick = pd.concat(picks, ignore_index=True)
    sel = sub.drop(columns="ae").merge(pick, on=["cutoff", "unique_id", "model"], how="inner")
    sel["model"] = name
    return pd.concat([cv, sel[cv.columns]], ignore_index=True)
