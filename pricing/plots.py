"""Price-vs-reference chart per gpu_model (PNG for the MLflow run)."""
from __future__ import annotations

import io

import pandas as pd


def price_vs_reference(items: pd.DataFrame, gpu_model: str) -> bytes:
    """Spot prices per pool over the blocks, reserved prices per term, references, ceilings and floor."""
    from matplotlib.figure import Figure  # not pyplot: no global state, safe from worker threads

    it = items[(items["gpu_model"] == gpu_model) & items["offered"].astype(bool)]
    fig = Figure(figsize=(10, 4.5), dpi=100)
    ax = fig.subplots()
    spot = it[it["product"] == "spot"]
    for pool, g in spot.groupby("pool"):
        ax.step(g["start"], g["price_per_gpu_hour"], where="post", lw=0.8, alpha=0.6)
    res = it[it["product"] != "spot"]
    markers = {"reserved_1d": "o", "reserved_7d": "s", "reserved_30d": "D"}
    for prod, g in res.groupby("product"):
        ax.scatter(g["start"], g["price_per_gpu_hour"], marker=markers.get(prod, "x"), s=28, label=prod, zorder=3)
    for prod_cls, color in (("spot", "tab:red"), ("reserved", "tab:purple")):
        sub = spot if prod_cls == "spot" else res
        if len(sub):
            r = sub.iloc[0]
            ax.axhline(r["reference_price"], color=color, ls="--", lw=1,
                       label=f"{prod_cls} reference {r['reference_provider']} {r['reference_sku']} {r['reference_price']:.3f}")
            ax.axhline(sub["ceiling"].max(), color=color, ls=":", lw=1, label=f"{prod_cls} ceiling")
    if len(it):
        ax.axhline(it["floor"].max(), color="black", lw=1, label=f"floor {it['floor'].max():.3f}")
    ax.set_title(f"{gpu_model}: idlecap prices vs the cheapest comparable reference (USD / GPU-hour)")
    ax.set_ylabel("USD per GPU-hour")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper right")
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()
