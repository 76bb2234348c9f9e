"""Price charts split by product (per-pool series, y scaled to the prices, legends outside) and the
night-over-night chart."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from pricing.plots import (nights_chart, nights_figure, price_limits, reserved_chart, reserved_figure, spot_chart,
                           spot_figure)

T0 = pd.Timestamp("2024-03-05 00:00", tz="UTC")


def items(pools: int = 3, spot_ref: float = 0.316, seed: int = 0) -> pd.DataFrame:
    """Offered spot blocks (7 days of 6-h blocks) and one reserved item per term, per pool."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(pools):
        pool = f"pool-{i:02d}"
        for b in range(28):
            rows.append({"pool": pool, "product": "spot", "start": T0 + pd.Timedelta(hours=6 * b), "hours": 6,
                         "price_per_gpu_hour": 0.20 + 0.02 * i + rng.uniform(0, 0.03), "gpus_offered": 1 + i,
                         "reference_price": spot_ref, "ceiling": 0.9 * spot_ref, "floor": 0.097})
        for d, disc in ((1, 0.0), (7, 0.05), (30, 0.12)):
            rows.append({"pool": pool, "product": f"reserved_{d}d", "start": T0, "hours": 24 * d,
                         "price_per_gpu_hour": 1.302 * 0.9 * (1 - disc) - 0.01 * i, "gpus_offered": 2 + i,
                         "reference_price": 1.302, "ceiling": 0.9 * 1.302, "floor": 0.097,
                         "spot_expected_price": 0.25})
    df = pd.DataFrame(rows)
    df["end"] = df["start"] + pd.to_timedelta(df["hours"], unit="h")
    return df.assign(gpu_model="V100", offered=True, reference_provider="aws", reference_sku="p3.2xlarge",
                     performance_factor=1.0)


def _legend_outside(fig, legend, axes) -> None:
    FigureCanvasAgg(fig).draw()
    box = legend.get_window_extent()
    for ax in axes:
        assert box.x0 >= ax.get_window_extent().x1 - 1  # right of every axes: covers no line


def test_spot_chart_has_a_line_and_a_legend_entry_per_pool(readable_png):
    it = items(3)
    fig = spot_figure(it, "V100")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [x.split(":")[0] for x in labels[:3]] == ["pool-02", "pool-01", "pool-00"]  # largest GPU-hours first
    assert "spot reference aws p3.2xlarge 0.316" in labels and "spot ceiling 0.284" in labels
    assert ax.get_xlabel() == "block start (UTC)" and ax.get_ylabel() == "USD per GPU-hour"
    _legend_outside(fig, ax.get_legend(), [ax])
    readable_png(spot_chart(it, "V100"))


def test_spot_axis_is_scaled_to_the_prices_and_a_far_reference_becomes_an_arrow():
    it = items(3, spot_ref=1.30)  # spot prices ~0.2-0.3 under a 1.30 reference
    ax = spot_figure(it, "V100").axes[0]
    bottom, top = ax.get_ylim()
    assert bottom > 0.05 and top < 0.4  # not 0..1.3 with the prices in the bottom fifth
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(x.startswith("spot reference aws p3.2xlarge 1.300") and "above the chart" in x for x in labels)
    assert not any(line.get_label().startswith("spot reference") for line in ax.get_lines())


def test_price_limits_keep_near_lines_and_push_far_ones_out():
    lo, hi, drawn, beyond = price_limits(pd.Series([0.20, 0.25]), {"ref": 0.30, "far": 1.3, "floor": 0.16, "cost": 0.05})
    assert set(drawn) == {"ref", "floor"} and set(beyond) == {"far", "cost"}  # within one span of the prices
    assert lo < 0.16 and 0.30 < hi < 0.4


def test_many_pools_name_the_largest_and_grey_the_rest():
    it = items(20)
    labels = [t.get_text() for t in spot_figure(it, "V100", top_n=5).axes[0].get_legend().get_texts()]
    assert sum(x.startswith("pool-") for x in labels) == 5 and "15 other pools (grey)" in labels


def test_reserved_chart_has_a_panel_per_term_with_a_point_per_pool(readable_png):
    it = items(3)
    fig = reserved_figure(it, "V100")
    axes = fig.axes
    assert [a.get_title().split("\n")[0] for a in axes] == ["reserved 1d", "reserved 7d", "reserved 30d"]
    assert all("UTC" in a.get_title() for a in axes)
    for a in axes:
        assert [t.get_text() for t in a.get_xticklabels()] == ["pool-02", "pool-01", "pool-00"]
        assert len(a.collections[0].get_offsets()) == 3
    assert axes[0].get_ylim() == axes[2].get_ylim()  # one scale: terms compare
    _legend_outside(fig, fig.legends[0], axes)
    readable_png(reserved_chart(it, "V100"))


def test_each_reserved_panel_draws_its_own_term_ceiling(readable_png):
    it = items(3)
    disc = {1: 0.0, 7: 0.05, 30: 0.12}
    fig = reserved_figure(it, "V100", term_discount=disc)
    ceil = float(it["ceiling"].max())
    for ax, d in zip(fig.axes, (1, 7, 30)):
        ys = {round(float(line.get_ydata()[0]), 6) for line in ax.get_lines() if line.get_linestyle() == ":"}
        assert round(ceil * (1 - disc[d]), 6) in ys, (d, ys)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "term ceiling (reference - undercut - term discount)" in labels
    assert not any(x.startswith("reserved ceiling") for x in labels)
    readable_png(reserved_chart(it, "V100", term_discount=disc))


def test_no_offers_of_a_model_still_draw_a_labelled_chart(readable_png):
    it = items(1)
    readable_png(reserved_chart(it[it["product"] == "spot"], "V100"), min_bytes=5_000)
    readable_png(spot_chart(it[it["product"] != "spot"], "V100"), min_bytes=5_000)


def nights(n: int = 5) -> pd.DataFrame:
    rows = []
    status = ["published", "unchanged", "published", "held", "failed"] * (n // 5 + 1)
    v = 0
    for i in range(n):
        v += status[i] == "published"
        for prod, gh, lst, exp in (("spot", 4000 + 100 * i, 1000, 950), ("reserved_7d", 2000, 1500, 600)):
            rows.append({"night_id": f"n{i}", "started_at": T0 + pd.Timedelta(days=i), "status": status[i],
                         "sheet_version": v, "product": prod, "gpu_hours": gh, "list_revenue": lst,
                         "expected_revenue": exp})
    return pd.DataFrame(rows)


def test_nights_chart_stacks_products_and_revenue_per_night(readable_png):
    fig = nights_figure(nights(5))
    top, bottom = fig.axes[1], fig.axes[0]  # created bottom first
    assert bottom.get_ylabel() == "USD" and top.get_ylabel() == "GPU-hours offered"
    heights = [p.get_height() for p in top.patches]
    assert heights[:5] == [4000, 4100, 4200, 4300, 4400] and heights[5:] == [2000] * 5
    revenue = [p.get_height() for p in bottom.patches]
    assert revenue[:5] == [950] * 5 and revenue[5:] == [600] * 5  # expected sales x price, both products
    ticks = [t.get_text() for t in bottom.get_xticklabels()]
    assert ticks[0].endswith("v1") and ticks[1].endswith("v1 same") and ticks[4].endswith("FAILED")
    assert "UTC" in bottom.get_xlabel()
    readable_png(nights_chart(nights(5)))
    readable_png(nights_chart(nights(30)))


def test_pools_at_the_same_prices_stay_visible(readable_png):
    """Three pools flat on the ceiling would draw one line over another: they share it in dashes."""
    it = items(4)
    same = it["pool"].isin(["pool-01", "pool-02", "pool-03"]) & (it["product"] == "spot")
    it.loc[same, "price_per_gpu_hour"] = 0.284
    ax = spot_figure(it, "V100").axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum("(line shared by 3)" in x for x in labels) == 3
    assert not any("pool-00" in x and "shared" in x for x in labels)
    dashed = [line for line in ax.get_lines() if "line shared" in line.get_label()]
    offsets = {line.get_dashes()[0] if hasattr(line, "get_dashes") else line._dash_pattern[0] for line in dashed}
    assert len(dashed) == 3 and len(offsets) == 3  # each its own phase: every colour shows
    readable_png(spot_chart(it, "V100"))
