"""Price charts per gpu_model (PNGs for the MLflow price run): spot per pool and block, reserved per
term and pool, each against the reference it undercuts; scaled to the prices, legends outside."""
from __future__ import annotations

import io

import numpy as np
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


TOP_POOLS = 12       # pools named in a price chart's legend (largest GPU-hours offered); the rest are grey
NEAR_SPANS = 1.0     # a reference line this many data spans from the prices is drawn, farther it is an arrow


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _term(product: str) -> str:
    return product.replace("reserved_", "reserved ")


def _pool_order(it: pd.DataFrame) -> list[str]:
    """Pools by GPU-hours offered, largest first (ties by name)."""
    gh = (it["gpus_offered"] * it["hours"]).groupby(it["pool"]).sum()
    return sorted(gh.index, key=lambda p: (-gh[p], str(p)))


def price_limits(prices: pd.Series, lines: dict[str, float]) -> tuple[float, float, dict[str, float], dict[str, float]]:
    """y-limits scaled to the prices, with the reference lines that sit near them.

    Returns (bottom, top, drawn, beyond): `drawn` lines are inside the limits, `beyond` lines are
    farther than NEAR_SPANS data spans and are shown as arrows at the edge instead of squashing
    the prices into a corner."""
    p = pd.to_numeric(prices, errors="coerce").dropna()
    lo, hi = (float(p.min()), float(p.max())) if len(p) else (0.0, 1.0)
    span = max(hi - lo, 0.1 * max(abs(hi), 1e-3))
    drawn, beyond = {}, {}
    for name, v in lines.items():
        if v is None or not np.isfinite(v):
            continue
        (drawn if lo - NEAR_SPANS * span <= v <= hi + NEAR_SPANS * span else beyond)[name] = float(v)
    vals = [lo, hi, *drawn.values()]
    a, b = min(vals), max(vals)
    pad = 0.08 * max(b - a, span)
    return max(a - pad, 0.0) if a >= 0 else a - pad, b + pad, drawn, beyond


def reference_levels(sub: pd.DataFrame, kind: str) -> dict[str, float]:
    """The lines a price is judged against: reference (lowest and highest when pools differ), ceiling, cost floor."""
    refs = sub.drop_duplicates("reference_price").sort_values("reference_price")
    lines = {}
    for i, (_, r) in enumerate(refs.iterrows()):
        if i in (0, len(refs) - 1):
            lines[f"{kind} reference {reference_label(r)}"] = float(r["reference_price"])
    lines[f"{kind} ceiling {sub['ceiling'].max():.3f}"] = float(sub["ceiling"].max())
    lines[f"cost floor {sub['floor'].max():.3f}"] = float(sub["floor"].max())
    return lines


def _draw_levels(ax, drawn: dict[str, float], color: str, label: bool = True) -> None:
    for name, v in drawn.items():
        style = {"color": "black", "ls": "-"} if name.startswith("cost floor") else \
            {"color": color, "ls": "--" if " reference " in name else ":"}
        ax.axhline(v, lw=1.1, zorder=1, label=name if label else None, **style)


def _beyond_handles(beyond: dict[str, float], top: float, color: str) -> tuple[list, list[str]]:
    """Legend entries for the lines outside the y-limits: an arrow and the value, nothing squashed."""
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for name, v in beyond.items():
        up = v > top
        handles.append(Line2D([], [], ls="none", marker=r"$\uparrow$" if up else r"$\downarrow$", markersize=9,
                              color="black" if name.startswith("cost floor") else color))
        labels.append(f"{name} ({'above' if up else 'below'} the chart)")
    return handles, labels


def spot_figure(items: pd.DataFrame, gpu_model: str, top_n: int = TOP_POOLS):
    """Offered spot prices of one GPU model: a step line per pool over the blocks (UTC)."""
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure  # not pyplot: no global state, safe from worker threads

    it = items[(items["gpu_model"] == gpu_model) & items["offered"].astype(bool) & (items["product"] == "spot")]
    fig = Figure(figsize=(12.5, 5.2), dpi=100)
    ax = fig.add_axes((0.065, 0.15, 0.63, 0.74))
    order = _pool_order(it) if len(it) else []
    named = order[:top_n]
    colors = [f"C{i % 10}" for i in range(len(named))]
    styles = ["-", "--", "-.", ":"]
    # named pools with the very same prices would hide each other: such a group shares the line in
    # alternating dashes (each colour visible), and the legend says so
    sig = {p: tuple(it[it["pool"] == p].sort_values("start")[["start", "price_per_gpu_hour"]]
                    .assign(price_per_gpu_hour=lambda d: d["price_per_gpu_hour"].round(4)).itertuples(index=False))
           for p in named}
    groups: dict[tuple, list[str]] = {}
    for p in named:
        groups.setdefault(sig[p], []).append(p)
    for rank, pool in enumerate(order[::-1]):  # the named pools last: on top
        g = it[it["pool"] == pool].sort_values("start")
        x, y = [], []
        for r in g.itertuples(index=False):  # a gap between blocks breaks the line
            if x and x[-1] != r.start:
                x.append(x[-1]); y.append(np.nan)
            x += [r.start, r.end]; y += [r.price_per_gpu_hour, r.price_per_gpu_hour]
        if pool in named:
            i = named.index(pool)
            gh = int((g["gpus_offered"] * g["hours"]).sum())
            lo, hi = g["price_per_gpu_hour"].min(), g["price_per_gpu_hour"].max()
            rng = f"{lo:.3f}" if abs(hi - lo) < 5e-4 else f"{lo:.3f}-{hi:.3f}"
            same = groups[sig[pool]]
            if len(same) > 1:
                n, j = len(same), same.index(pool)
                ls, also = (3.0 * j, (3.0, 3.0 * (n - 1))), f" (line shared by {n})"
            else:
                ls, also = styles[(i // 10) % 4], ""
            ax.plot(x, y, color=colors[i], ls=ls, lw=1.8, zorder=4,
                    label=f"{pool}: {rng} USD, {gh:,} GPU-h{also}")
        else:
            ax.plot(x, y, color="#b0b0b0", lw=0.8, zorder=2,
                    label=f"{len(order) - len(named)} other pools (grey)" if rank == 0 else None)
    extra: tuple[list, list[str]] = ([], [])
    if len(it):
        bottom, top, drawn, beyond = price_limits(it["price_per_gpu_hour"], reference_levels(it, "spot"))
        _draw_levels(ax, drawn, "tab:red")
        extra = _beyond_handles(beyond, top, "tab:red")
        ax.set_ylim(bottom, top)
        ax.set_xlim(it["start"].min(), it["end"].max())
    else:
        ax.text(0.5, 0.5, f"no spot item of {gpu_model} offered tonight", transform=ax.transAxes, ha="center")
    loc = mdates.AutoDateLocator(minticks=5, maxticks=10, tz="UTC")
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b\n%H:%M", tz="UTC"))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("block start (UTC)")
    ax.set_ylabel("USD per GPU-hour")
    ax.grid(alpha=0.25, lw=0.6)
    more = f"; legend: the {top_n} largest by GPU-hours offered" if len(order) > top_n else ""
    fig.text(0.065, 0.97, f"{gpu_model} spot: offered price per pool and block ({len(order)} pools{more})",
             fontsize=11, ha="left", va="top")
    h, lab = ax.get_legend_handles_labels()
    rank = {f"{p}:": i for i, p in enumerate(named)}  # largest pool first, the grey rest after them
    key = [rank.get(x.split(" ")[0], len(named) + (0 if x.endswith("(grey)") else 1)) for x in lab]
    h, lab = [h[i] for i in np.argsort(key, kind="stable")], [lab[i] for i in np.argsort(key, kind="stable")]
    ax.legend(h + extra[0], lab + extra[1], loc="upper left", bbox_to_anchor=(1.015, 1.0), fontsize=8, frameon=False,
              borderaxespad=0)
    return fig


def spot_chart(items: pd.DataFrame, gpu_model: str, top_n: int = TOP_POOLS) -> bytes:
    """PNG of spot_figure (`charts/spot_<gpu>.png` of the price run)."""
    return _png(spot_figure(items, gpu_model, top_n))


def reserved_figure(items: pd.DataFrame, gpu_model: str, top_n: int | None = None,
                    term_discount: dict[int, float] | None = None):
    """Offered reserved prices of one GPU model: a panel per term, a point per pool (labelled with
    the GPUs offered), the spot parity each price had to clear, and the term's reference lines.
    Every reserved item of a night starts at the same block, so pools (not time) are the x axis;
    the start is in the panel title."""
    from matplotlib.figure import Figure

    it = items[(items["gpu_model"] == gpu_model) & items["offered"].astype(bool)
               & items["product"].astype(str).str.startswith("reserved")]
    terms = sorted(it["product"].unique(), key=lambda p: int("".join(c for c in str(p) if c.isdigit()) or 0))
    fig = Figure(figsize=(12.5, 5.2), dpi=100)
    n = max(len(terms), 1)
    top_n = top_n or max(4, 24 // n)  # pools named per panel; the rest are one range column
    left, right, gap = 0.065, 0.70, 0.02
    w = (right - left - gap * (n - 1)) / n
    axes = [fig.add_axes((left + i * (w + gap), 0.2, w, 0.64)) for i in range(n)]
    for ax in axes[1:]:
        ax.sharey(axes[0])  # terms on one scale: the term discounts compare at a glance
    seen: set[str] = set()
    extra: tuple[list, list[str]] = ([], [])
    if len(it):
        parity = it["spot_expected_price"] if "spot_expected_price" in it else pd.Series(dtype=float)
        bottom, top, drawn, beyond = price_limits(pd.concat([it["price_per_gpu_hour"], parity]),
                                                  reference_levels(it, "reserved"))
        extra = _beyond_handles(beyond, top, "tab:purple")
        if term_discount:  # each term's own ceiling, drawn in its panel, replaces the undiscounted one
            drawn = {k: v for k, v in drawn.items() if not k.startswith("reserved ceiling")}
    if not terms:
        axes[0].text(0.5, 0.5, f"no reserved item of {gpu_model} offered tonight", transform=axes[0].transAxes,
                     ha="center")
        axes[0].set_xticks([])
    for ax, term in zip(axes, terms):
        g = it[it["product"] == term]
        order = _pool_order(g)
        named, rest = order[:top_n], g[~g["pool"].isin(order[:top_n])]
        x = {p: i for i, p in enumerate(named)}
        gn = g[g["pool"].isin(named)]
        xs = gn["pool"].map(x)
        lab = "price offered (label: GPUs)"
        ax.scatter(xs, gn["price_per_gpu_hour"], s=46, color="tab:purple", zorder=5, label=lab if lab not in seen else None)
        seen.add(lab)
        for xi, r in zip(xs, gn.itertuples(index=False)):
            ax.annotate(f"{int(r.gpus_offered)}", (xi, r.price_per_gpu_hour), textcoords="offset points", xytext=(5, 3), va="bottom",
                        fontsize=8, color="tab:purple")
        if "spot_expected_price" in gn and gn["spot_expected_price"].notna().any():
            lab = "spot parity (lower bound)"
            ax.scatter(xs, gn["spot_expected_price"], marker="_", s=160, color="tab:green", zorder=4,
                       label=lab if lab not in seen else None)
            seen.add(lab)
        ticks = list(named)
        if len(rest):  # the remaining pools: their price range in one column
            xi = len(named)
            lab = "other pools: price range and median"
            ax.vlines(xi, rest["price_per_gpu_hour"].min(), rest["price_per_gpu_hour"].max(), color="grey", lw=3,
                      label=lab if lab not in seen else None)
            ax.scatter([xi], [rest["price_per_gpu_hour"].median()], color="grey", zorder=5)
            seen.add(lab)
            ticks.append(f"{rest['pool'].nunique()} more\n(range)")
        ax.set_xticks(range(len(ticks)), ticks, rotation=45 if len(ticks) > 6 else 0, ha="right" if len(ticks) > 6 else "center",
                      fontsize=8)
        ax.set_xlim(-0.6, len(ticks) - 0.4)
        _draw_levels(ax, drawn, "tab:purple", label=ax is axes[0])
        if term_discount:
            from pricing.review import term_ceiling

            tc = float(term_ceiling(g, term_discount).max())
            lab = "term ceiling (reference - undercut - term discount)"
            ax.axhline(tc, color="tab:purple", ls=":", lw=1.1, zorder=1, label=lab if lab not in seen else None)
            ax.annotate(f"{tc:.3f}", (0.0, tc), xycoords=("axes fraction", "data"), xytext=(3, -3),
                        textcoords="offset points", ha="left", va="top", fontsize=7, color="tab:purple")
            seen.add(lab)
        ax.set_title(f"{_term(term)}\nfrom {pd.Timestamp(g['start'].min()):%a %d %b %H:%M} UTC", fontsize=10)
        ax.set_xlabel("pool")
        ax.grid(alpha=0.25, lw=0.6, axis="y")
    if len(it):
        axes[0].set_ylim(bottom, top)
    for ax in axes[1:]:
        ax.tick_params(labelleft=False)
    axes[0].set_ylabel("USD per GPU-hour")
    fig.text(0.065, 0.97, f"{gpu_model} reserved: offered price per pool and term", fontsize=11, ha="left", va="top")
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh); labels.append(ll)
    fig.legend(handles + extra[0], labels + extra[1], loc="upper left", bbox_to_anchor=(right + 0.01, 0.84),
               fontsize=8, frameon=False, borderaxespad=0)
    return fig


def reserved_chart(items: pd.DataFrame, gpu_model: str, top_n: int | None = None,
                   term_discount: dict[int, float] | None = None) -> bytes:
    """PNG of reserved_figure (`charts/reserved_<gpu>.png` of the price run)."""
    return _png(reserved_figure(items, gpu_model, top_n, term_discount))


PRODUCT_COLORS = {"spot": "tab:blue", "reserved_1d": "#c5b0d5", "reserved_7d": "#9467bd", "reserved_30d": "#5b3a8c"}


def nights_figure(nights: pd.DataFrame):
    """Night over night (warehouse.nightly.night_offers rows): GPU-hours offered per product, and
    expected revenue: GPU-hours the demand model expects to sell x price, spot and reserved (the
    parent run's `revenue.expected`). Nights that kept their sheet are hatched."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    per = nights.drop_duplicates("night_id").sort_values("started_at").reset_index(drop=True)
    few = len(per) <= 12  # two-line labels under the bars; more nights: one rotated line each
    fig = Figure(figsize=(12.5, 6.4), dpi=100)
    b = 0.14 if few else 0.25
    h = (0.89 - b - 0.09) / 2
    ax2 = fig.add_axes((0.075, b, 0.66, h))
    ax1 = fig.add_axes((0.075, b + h + 0.09, 0.66, h), sharex=ax2)
    x = np.arange(len(per))
    by = nights.dropna(subset=["product"]).pivot_table(index="night_id", columns="product", values=["gpu_hours",
                                                       "list_revenue", "expected_revenue"], aggfunc="sum")
    prods = sorted({str(c[1]) for c in by.columns},
                   key=lambda p: (p != "spot", int("".join(ch for ch in p if ch.isdigit()) or 0)))

    def col(what: str, prod: str) -> np.ndarray:
        if (what, prod) not in by.columns:
            return np.zeros(len(per))
        return by[(what, prod)].reindex(per["night_id"]).fillna(0).to_numpy(float)

    kept = ~per["status"].isin(["published"]).to_numpy()
    hatch = ["//" if k else None for k in kept]
    base = np.zeros(len(per))
    for prod in prods:
        v = col("gpu_hours", prod)
        ax1.bar(x, v, width=0.7, bottom=base, color=PRODUCT_COLORS.get(prod, "grey"), hatch=hatch, edgecolor="white", lw=0.5,
                label=prod.replace("_", " "))
        base += v
    if len(per) <= 14:
        for xi, tot in zip(x, base):
            ax1.annotate(f"{tot:,.0f}", (xi, tot), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=7)
    ax1.set_ylim(0, max(base.max(), 1) * 1.15)
    ax1.set_ylabel("GPU-hours offered")
    ax1.set_title("GPU-hours offered per product (the sheet live after each night)", fontsize=10, loc="left")

    spot = col("expected_revenue", "spot")
    reserved = sum((col("expected_revenue", p) for p in prods if p.startswith("reserved")), np.zeros(len(per)))
    ax2.bar(x, spot, width=0.7, color="tab:blue", hatch=hatch, edgecolor="white", lw=0.5,
            label="spot: expected GPU-hours sold x price\n(demand model)")
    ax2.bar(x, reserved, width=0.7, bottom=spot, color="#9467bd", hatch=hatch, edgecolor="white", lw=0.5,
            label="reserved: expected GPU-hours sold x price\n(demand model)")
    tot = spot + reserved
    if len(per) <= 14:  # values on the bars while they fit
        for xi, t in zip(x, tot):
            ax2.annotate(f"${t:,.0f}", (xi, t), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=7)
    ax2.set_ylim(0, max(tot.max(initial=0), 1) * 1.15)
    ax2.set_ylabel("USD")
    ax2.set_title("expected revenue of the offered sheet (USD, over each item's whole term)", fontsize=10, loc="left")
    labels = [(f"{pd.Timestamp(r.started_at):%d %b %H:%M}\n" if few else f"{pd.Timestamp(r.started_at):%m-%d %H:%M} ")
              + (f"v{int(r.sheet_version)}" if pd.notna(r.sheet_version) else "no sheet")
              + {"published": "", "unchanged": " same", "failed": " FAILED"}.get(r.status, f" {r.status}")
              for r in per.itertuples()]
    ax2.set_xticks(x, labels, fontsize=8 if few else 7, rotation=0 if few else 90)
    ax1.tick_params(labelbottom=False)
    ax2.set_xlabel("night (start, UTC) and the sheet live after it")
    ax2.set_xlim(-0.6, max(len(per), 6) - 0.4)  # a first night is one bar, not the whole width
    for ax in (ax1, ax2):
        ax.grid(alpha=0.25, lw=0.6, axis="y")
    extra = [Patch(facecolor="white", edgecolor="grey", hatch="//", label="hatched: sheet kept (same / held / failed)")]
    h1, l1 = ax1.get_legend_handles_labels()
    ax1.legend(h1 + extra, l1 + [extra[0].get_label()], loc="upper left", bbox_to_anchor=(1.015, 1.0), fontsize=8,
               frameon=False, borderaxespad=0)
    ax2.legend(loc="upper left", bbox_to_anchor=(1.015, 1.0), fontsize=8, frameon=False, borderaxespad=0)
    first = pd.Timestamp(per["started_at"].min()) if len(per) else None
    span = f" since {first:%Y-%m-%d}" if first is not None else ""
    fig.text(0.075, 0.97, f"Night over night: the last {len(per)} night{'s' if len(per) != 1 else ''}{span} (UTC)", fontsize=11, ha="left", va="top")
    return fig


def nights_chart(nights: pd.DataFrame) -> bytes:
    """PNG of nights_figure (`nights.png` of the nightly parent run)."""
    return _png(nights_figure(nights))


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
