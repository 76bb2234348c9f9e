"""Fan charts: history, forecast bands, tonight's offers, capacity, planned runs. PNG bytes out.

Zoomed on what a reviewer decides about: a few days of history and the spot window. The
reserved terms of the night's offers are stacked per term (their windows and GPU levels), the
GPUs offered in total (reserved + spot) are drawn over the forecast bands, capacity is a dashed
line with headroom above it (a pool at capacity stays visible), and the legend sits below the
axes so it covers nothing. Times are UTC.
"""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402  (not pyplot: charts are drawn from worker threads)
from matplotlib.transforms import blended_transform_factory  # noqa: E402

BAND = "#1f77b4"
CAPACITY = "#d62728"  # dashed over the observed line: a pool at capacity shows both
TERM_COLORS = {"reserved_1d": "#c5b0d5", "reserved_7d": "#9467bd", "reserved_30d": "#5b3a8c"}
HEADROOM = 1.08  # y-limit above the larger of capacity and the drawn data


def _utc(t) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _utc_col(s: pd.Series) -> pd.Series:
    s = pd.to_datetime(s)
    return s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")


def _term_label(product: str) -> str:
    return product.replace("reserved_", "reserved ")


def reserved_in_force(offers: pd.DataFrame, hours: pd.DatetimeIndex) -> pd.DataFrame:
    """GPUs promised per reserved term at each hour (columns: the terms, longest first)."""
    res = offers[offers["product"].astype(str).str.startswith("reserved")]
    out = {}
    t = hours.to_numpy()
    for prod, g in sorted(res.groupby("product"), key=lambda kv: -(kv[1]["end"] - kv[1]["start"]).max()):
        s, e = _utc_col(g["start"]).to_numpy(), _utc_col(g["end"]).to_numpy()
        on = (t[:, None] >= s[None, :]) & (t[:, None] < e[None, :])
        out[str(prod)] = (on * g["gpus_offered"].to_numpy(float)[None, :]).sum(axis=1)
    return pd.DataFrame(out, index=hours)


def spot_offered(offers: pd.DataFrame, hours: pd.DatetimeIndex) -> pd.Series:
    """Spot GPUs offered at each hour (0 between offered blocks)."""
    sp = offers[offers["product"].astype(str) == "spot"]
    t = hours.to_numpy()
    s, e = _utc_col(sp["start"]).to_numpy(), _utc_col(sp["end"]).to_numpy()
    on = (t[:, None] >= s[None, :]) & (t[:, None] < e[None, :])
    return pd.Series((on * sp["gpus_offered"].to_numpy(float)[None, :]).sum(axis=1), index=hours)


def fan_figure(
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    plan: pd.DataFrame | None = None,
    title: str = "",
    history_hours: int = 72,
    *,
    spot_days: float = 7,
    capacity: float | None = None,
    offers: pd.DataFrame | None = None,
    origin=None,
    origin_label: str = "now (pricing origin)",
) -> Figure:
    """One pool's chart as a matplotlib Figure (fan_chart renders it).

    history: ds, y (and gpus_total: the capacity line); forecast: ds, mean, q05..q95 (and y:
    actuals, when a backtest draws it); plan: planned training runs (start, end); offers: the
    night's offered items of the pool (product, start, end, gpus_offered); origin: the pricing
    origin ("now"), by default the first forecast hour (`origin_label` names it). The x range is `history_hours` before the
    origin to `spot_days` after it."""
    fc = forecast.sort_values("ds").assign(ds=lambda d: _utc_col(d["ds"])) if len(forecast) else forecast
    hist = history.sort_values("ds").assign(ds=lambda d: _utc_col(d["ds"])) if len(history) else history
    if origin is not None:
        t0 = _utc(origin)
    elif len(fc):
        t0 = fc["ds"].min()
    elif len(hist):
        t0 = hist["ds"].max() + pd.Timedelta(hours=1)
    else:
        t0 = pd.Timestamp.now(tz="UTC").floor("h")
    x0, x1 = t0 - pd.Timedelta(hours=history_hours), t0 + pd.Timedelta(days=spot_days)
    if offers is not None and len(offers):  # the last spot block, and a term ending within a day of the edge
        ends = _utc_col(offers["end"])
        x1 = max(x1, ends[(offers["product"] == "spot") | (ends <= x1 + pd.Timedelta(days=1))].max())
    x1 = x1 + pd.Timedelta(hours=6)
    if len(hist):
        hist = hist[(hist["ds"] >= x0) & (hist["ds"] <= x1)]
    if len(fc):
        fc = fc[(fc["ds"] >= x0 - pd.Timedelta(hours=1)) & (fc["ds"] <= x1 + pd.Timedelta(hours=1))]

    fig = Figure(figsize=(11, 5.2), dpi=100)  # height set below, once the legend's rows are known
    ax = fig.add_axes((0.065, 0.34, 0.89, 0.56))  # right edge 0.955: room for the last date label
    top = 0.0
    if len(hist):
        ax.plot(hist["ds"], hist["y"], color="#222222", lw=1.5, label="idle GPUs (observed)", zorder=4)
        top = max(top, float(np.nanmax(hist["y"].to_numpy(float), initial=0)))
    if len(fc):
        for lo, hi, a, name in (("q05", "q95", 0.15, "90%"), ("q10", "q90", 0.22, "80%"), ("q25", "q75", 0.32, "50%")):
            ax.fill_between(fc["ds"], fc[lo], fc[hi], color=BAND, alpha=a, lw=0, label=f"forecast {name} band", zorder=1)
        ax.plot(fc["ds"], fc["mean"], color=BAND, lw=1.4, label="forecast mean", zorder=3)
        if "y" in fc and fc["y"].notna().any():
            ax.plot(fc["ds"], fc["y"], color="#ff7f0e", lw=1.1, label="actual (observed later)", zorder=4)
        top = max(top, float(np.nanmax(fc["q95"].to_numpy(float), initial=0)))

    if offers is not None and len(offers):
        hours = pd.date_range(t0.floor("h"), x1, freq="h")
        res = reserved_in_force(offers, hours)
        base = np.zeros(len(hours))
        for prod in res.columns:
            o = offers[offers["product"] == prod]
            until = _utc_col(o["end"]).max()
            gpus = o["gpus_offered"].astype(int)
            lvl = f"{gpus.iloc[0]} GPU" + ("s" if gpus.iloc[0] != 1 else "") if gpus.nunique() == 1 \
                else f"{gpus.min()}-{gpus.max()} GPUs"
            ax.fill_between(hours, base, base + res[prod].to_numpy(), step="post", color=TERM_COLORS.get(prod, "#7f7f7f"),
                            alpha=0.55, lw=0, zorder=2,
                            label=f"{_term_label(prod)} offered: {lvl} to {until:%m-%d %H:%M}"
                                  + (" (beyond the chart)" if until > x1 else ""))
            base = base + res[prod].to_numpy()
        total = base + spot_offered(offers, hours).to_numpy()
        if (total > 0).any():
            ax.step(hours, total, where="post", color="#2ca02c", lw=1.5, zorder=5,
                    label="GPUs offered tonight (reserved + spot)")
            top = max(top, float(total.max()))

    if plan is not None and len(plan):
        for i, r in enumerate(plan.itertuples(index=False)):
            s, e = _utc(r.start), _utc(r.end)
            if e >= x0 and s <= x1:
                ax.axvspan(s, e, color="#ff7f0e", alpha=0.12, lw=0, zorder=0,
                           label="planned training run" if i == 0 else None)

    caps = []
    if "gpus_total" in hist and len(hist):
        caps.append(hist[["ds", "gpus_total"]])
    if "gpus_total" in fc and len(fc):
        caps.append(fc[["ds", "gpus_total"]])
    cap_series = pd.concat(caps).dropna() if caps else pd.DataFrame(columns=["ds", "gpus_total"])
    if capacity is None and len(cap_series):
        capacity = float(cap_series["gpus_total"].iloc[-1])
    if capacity is not None and np.isfinite(capacity):
        if len(cap_series) and cap_series["gpus_total"].nunique() > 1:
            ax.step(cap_series["ds"], cap_series["gpus_total"], where="post", color=CAPACITY, ls=(0, (4, 3)), lw=1.2, zorder=6,
                    label=f"capacity (now {capacity:g} GPUs)")
            top = max(top, float(cap_series["gpus_total"].max()))
        else:
            ax.axhline(capacity, color=CAPACITY, ls=(0, (4, 3)), lw=1.2, zorder=6, label=f"capacity {capacity:g} GPUs")
        top = max(top, float(capacity))
    top = HEADROOM * max(top, 1.0)
    ax.set_ylim(-0.03 * top, top)  # a pool at 0 or at capacity is drawn inside the frame
    ax.set_xlim(x0, x1)

    ax.axvline(t0, color="#444444", lw=1.0, ls="-.", zorder=7)
    ax.text(t0, 1.01, f"{origin_label} {t0:%Y-%m-%d %H:%M} UTC", transform=blended_transform_factory(
        ax.transData, ax.transAxes), ha="center", va="bottom", fontsize=8, color="#444444")
    days = (x1 - x0) / pd.Timedelta(days=1)
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, int(days // 12) + 1), tz="UTC"))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b", tz="UTC"))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("idle GPUs")
    ax.grid(alpha=0.25, lw=0.6)
    handles, labels = ax.get_legend_handles_labels()
    # fixed layout in inches (no tight_layout pass): title and origin label above the axes, tick
    # labels and the axis label below, then the legend's rows
    rows = -(-len(labels) // 3)
    above, axes_h, below, legend_h = 0.62, 2.9, 0.62, 0.2 * rows + 0.12
    height = above + axes_h + below + legend_h
    fig.set_size_inches(11, height)
    ax.set_position((0.065, (below + legend_h) / height, 0.89, axes_h / height))
    fig.text(0.065, 1 - 0.12 / height, title, fontsize=11, ha="left", va="top")
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, (legend_h + 0.06) / height), ncol=3, fontsize=8,
               frameon=False)
    return fig


def fan_chart(
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    plan: pd.DataFrame | None = None,
    title: str = "",
    history_hours: int = 72,
    **kwargs,
) -> bytes:
    """One pool: history (ds, y[, gpus_total]), forecast (ds, mean, q05..q95), plan rows (start, end);
    keyword arguments as fan_figure (spot_days, capacity, offers, origin). PNG bytes."""
    fig = fan_figure(history, forecast, plan, title, history_hours, **kwargs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def fan_chart_or_error(key: str, *args, **kwargs) -> tuple[str, bytes | None, str | None]:
    """(key, PNG, None), or (key, None, the error): one pool's failure never costs the others their
    charts. Module-level, so process pools can run it."""
    try:
        return key, fan_chart(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001
        return key, None, f"{type(exc).__name__}: {exc}"
