"""Fan charts: history, forecast mean, 50/80/90% bands, planned runs shaded. PNG bytes out."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (not pyplot: charts are drawn from worker threads)
import pandas as pd  # noqa: E402


def fan_chart(
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    plan: pd.DataFrame | None = None,
    title: str = "",
    history_hours: int = 168,
) -> bytes:
    """One pool: history (ds, y), forecast (ds, mean, q05..q95), plan rows (start, end, gpus)."""
    fig = Figure(figsize=(10, 3.6), dpi=100)
    ax = fig.subplots()
    hist = history.sort_values("ds")
    if len(forecast):
        hist = hist[hist["ds"] >= forecast["ds"].min() - pd.Timedelta(hours=history_hours)]
    ax.plot(hist["ds"], hist["y"], color="#333333", lw=1.0, label="idle GPUs (observed)")
    if len(forecast):
        fc = forecast.sort_values("ds")
        ax.fill_between(fc["ds"], fc["q05"], fc["q95"], color="#1f77b4", alpha=0.15, lw=0, label="90%")
        ax.fill_between(fc["ds"], fc["q10"], fc["q90"], color="#1f77b4", alpha=0.25, lw=0, label="80%")
        ax.fill_between(fc["ds"], fc["q25"], fc["q75"], color="#1f77b4", alpha=0.35, lw=0, label="50%")
        ax.plot(fc["ds"], fc["mean"], color="#1f77b4", lw=1.4, label="forecast mean")
        if "y" in fc and fc["y"].notna().any():
            ax.plot(fc["ds"], fc["y"], color="#d62728", lw=0.9, ls="--", label="actual")
        ax.axvline(fc["ds"].min(), color="grey", lw=0.8, ls=":")
    if plan is not None and len(plan):
        lo, hi = ax.get_xlim()
        for i, r in enumerate(plan.itertuples(index=False)):
            ax.axvspan(r.start, r.end, color="#ff7f0e", alpha=0.12, lw=0, label="planned run" if i == 0 else None)
        ax.set_xlim(lo, hi)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("idle GPUs")
    ax.set_title(title, fontsize=10, loc="left")
    ax.legend(loc="upper left", fontsize=7, ncol=4, frameon=False)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
