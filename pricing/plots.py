"""Price-vs-reference chart per gpu_model (PNG for the MLflow run)."""
from __future__ import annotations

import io

import pandas as pd


def reference_label(r: pd.Series) -> str:
    """`aws p3.2xlarge 0.316`, or with a performance factor `azure ND96ams 1.331 x 0.95 = 1.265`."""
    f = r.get("performance_factor", 1.0)
    f = 1.0 if f is None or pd.isna(f) else float(f)
    listed = r.get("reference_list_price", r["reference_price"])
    head = f"{r['reference_provider']} {r['reference_sku']}"
    if abs(f - 1) < 1e-9:
        return f"{head} {r['reference_price']:.3f}"
    return f"{head} {listed:.3f} x {f:g} = {r['reference_price']:.3f}"


def price_vs_reference(items: pd.DataFrame, gpu_model: str) -> bytes:
    """Spot prices per pool over the blocks, reserved prices per term, references, ceilings and floor."""
    from matplotlib.figure import Figure  # not pyplot: no global state, safe from worker threads

    it = items[(items["gpu_model"] == gpu_model) & items["offered"].astype(bool)]
    fig = Figure(figsize=(12.5, 4.5), dpi=100)
    ax = fig.subplots()
    spot = it[it["product"] == "spot"]
    few = spot["pool"].nunique() <= 8
    for pool, g in spot.groupby("pool"):
        g = g.sort_values("start")
        ax.step(g["start"], g["price_per_gpu_hour"], where="post", lw=1.6, alpha=0.85, zorder=3,
                label=f"spot {pool}" if few else None)
    res = it[it["product"] != "spot"]
    markers = {"reserved_1d": "o", "reserved_7d": "s", "reserved_30d": "D"}
    for prod, g in res.groupby("product"):
        ax.scatter(g["start"], g["price_per_gpu_hour"], marker=markers.get(prod, "x"), s=28, label=prod, zorder=3)
    for prod_cls, color in (("spot", "tab:red"), ("reserved", "tab:purple")):
        sub = spot if prod_cls == "spot" else res
        if len(sub):
            r = sub.iloc[0]
            ax.axhline(r["reference_price"], color=color, ls="--", lw=1, zorder=1,
                       label=f"{prod_cls} reference {reference_label(r)}")
            ax.axhline(sub["ceiling"].max(), color=color, ls=":", lw=1, zorder=1,
                       label=f"{prod_cls} ceiling {sub['ceiling'].max():.3f}")
    if len(it):
        ax.axhline(it["floor"].max(), color="black", lw=1, label=f"floor {it['floor'].max():.3f}")
    ax.set_title(f"{gpu_model}: idlecap prices vs the cheapest comparable reference (USD / GPU-hour)")
    ax.set_ylabel("USD per GPU-hour")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot: lines stay visible
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def safety_yield_chart(curve: pd.DataFrame, bar: float, chosen: float | None, in_force: float) -> bytes:
    """Reserved safety and achievable share per per-lease break target, early vs later origins.

    The target is chosen on the early origins (largest meeting the safety bar); the later ones
    show what that choice is worth on days that did not choose it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    colors = {"early": "tab:blue", "later": "tab:orange"}
    for name, g in curve[curve["origins"].isin(list(colors))].groupby("origins"):
        g = g.sort_values("target")
        ax1.plot(g["target"], g["safety"], marker="o", color=colors[name], label=f"{name} origins")
        ax2.plot(g["achievable"], g["safety"], marker="o", color=colors[name], label=f"{name} origins")
        # targets past the newsvendor level sell the same: one label for the run of equal points
        same = g.groupby([g["achievable"].round(4), g["safety"].round(4)], sort=False)["target"]
        for (a, sf), t in same:
            label = f"{t.min():g}" if len(t) == 1 else f"{t.min():g}-{t.max():g}"
            ax2.annotate(label, (a, sf), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for ax in (ax1, ax2):
        ax.axhline(bar, color="grey", ls="--", lw=1, label=f"safety bar {bar:g}")
        ax.set_ylabel("reserved safety (GPU-hours idle at every sample)")
        ax.grid(alpha=0.3)
    ax1.set_xscale("log")
    ax1.set_xlabel("per-lease break target")
    if chosen is not None:
        ax1.axvline(chosen, color="tab:green", lw=1.5, label=f"chosen on early origins: {chosen:g}")
    ax1.axvline(in_force, color="black", lw=1, ls=":", label=f"in force: {in_force:g}")
    ax1.set_title("safety by break target", fontsize=10)
    ax2.set_xlabel("achievable: offered / what hindsight could promise safely")
    ax2.set_title("safety vs achievable (labels: target)", fontsize=10)
    ax1.legend(fontsize=8, loc="lower left")
    ax2.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
