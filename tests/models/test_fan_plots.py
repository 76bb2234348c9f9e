"""Fan charts: zoomed on the spot week, a pool at capacity visible, offers drawn, legend outside the axes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.plots import fan_chart, fan_figure, reserved_in_force, spot_offered

T0 = pd.Timestamp("2024-03-04 16:00", tz="UTC")
QS = ["q05", "q10", "q25", "q50", "q75", "q90", "q95"]


def frames(level: float = 40.0, cap: float = 64.0, days_hist: int = 10, horizon_days: int = 30):
    hist_ds = pd.date_range(T0 - pd.Timedelta(days=days_hist), T0 - pd.Timedelta(hours=1), freq="h")
    history = pd.DataFrame({"ds": hist_ds, "y": np.full(len(hist_ds), level), "gpus_total": cap})
    fc_ds = pd.date_range(T0, T0 + pd.Timedelta(days=horizon_days), freq="h", inclusive="left")
    spread = np.linspace(0, 1, len(QS))
    fc = pd.DataFrame({"ds": fc_ds, "mean": level, "gpus_total": cap,
                       **{q: np.clip(level - 8 + 16 * s, 0, cap) for q, s in zip(QS, spread)}})
    return history, fc


def offers():
    spot = pd.DataFrame({"product": "spot", "start": pd.date_range(T0 + pd.Timedelta(hours=2), periods=28, freq="6h"),
                         "gpus_offered": 5})
    spot["end"] = spot["start"] + pd.Timedelta(hours=6)
    res = pd.DataFrame({"product": ["reserved_1d", "reserved_7d", "reserved_30d"],
                        "start": T0 + pd.Timedelta(hours=8), "gpus_offered": [2, 10, 4]})
    res["end"] = res["start"] + pd.to_timedelta([1, 7, 30], unit="D")
    return pd.concat([spot, res], ignore_index=True)


def test_the_chart_shows_the_spot_week_not_the_whole_horizon():
    history, fc = frames()
    ax = fan_figure(history, fc, origin=T0, spot_days=7).axes[0]
    lo, hi = (pd.Timestamp(x * 86400, unit="s", tz="UTC") for x in ax.get_xlim())  # matplotlib days since epoch
    assert lo == T0 - pd.Timedelta(hours=72)
    assert T0 + pd.Timedelta(days=7) <= hi <= T0 + pd.Timedelta(days=7, hours=12)
    assert ax.get_xlabel() == "time (UTC)" and ax.get_ylabel() == "idle GPUs"


@pytest.mark.parametrize("level", [64.0, 0.0])
def test_a_pool_at_capacity_or_at_zero_is_drawn_inside_the_frame(level):
    history, fc = frames(level=level, cap=64.0)
    ax = fan_figure(history, fc, origin=T0).axes[0]
    bottom, top = ax.get_ylim()
    assert top >= 1.08 * 64 - 1e-9 and bottom < 0
    caps = [line for line in ax.get_lines() if line.get_label().startswith("capacity")]
    assert caps and caps[0].get_linestyle() not in ("-", "None")  # dashed, over the observed line
    assert caps[0].get_zorder() > max(line.get_zorder() for line in ax.get_lines()
                                      if line.get_label() == "idle GPUs (observed)")


def test_the_now_line_is_labelled_and_the_legend_covers_nothing():
    history, fc = frames()
    fig = fan_figure(history, fc, offers=offers(), origin=T0, title="p (V100, 64 GPUs)")
    ax = fig.axes[0]
    assert any(t.get_text().startswith("now (pricing origin) 2024-03-04 16:00 UTC") for t in ax.texts)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()  # lays the labels out
    legend = fig.legends[0].get_window_extent()
    assert legend.y1 < ax.get_window_extent().y0  # below the axes
    assert legend.y1 < ax.xaxis.label.get_window_extent().y0  # and below the axis label
    labels = fig.legends[0].get_texts()
    assert any("reserved 30d offered: 4 GPUs" in t.get_text() and "beyond the chart" in t.get_text() for t in labels)
    assert any(t.get_text() == "GPUs offered tonight (reserved + spot)" for t in labels)


def test_reserved_terms_stack_and_spot_adds_on_top():
    hours = pd.date_range(T0, periods=24 * 9, freq="h")
    res = reserved_in_force(offers(), hours)
    assert list(res.columns) == ["reserved_30d", "reserved_7d", "reserved_1d"]  # longest at the bottom
    at = res.loc[T0 + pd.Timedelta(hours=10)]
    assert at.to_dict() == {"reserved_30d": 4, "reserved_7d": 10, "reserved_1d": 2}
    assert res.loc[T0 + pd.Timedelta(days=2)].sum() == 14  # the 1-day term is over
    assert res.loc[T0].sum() == 0  # before the terms start
    sp = spot_offered(offers(), hours)
    assert sp[T0 + pd.Timedelta(hours=2)] == 5 and sp[T0] == 0


def test_the_png_is_a_readable_image_and_a_plan_is_shaded(readable_png):
    history, fc = frames()
    plan = pd.DataFrame({"start": [T0 + pd.Timedelta(days=2)], "end": [T0 + pd.Timedelta(days=2, hours=10)]})
    png = fan_chart(history, fc, plan, "p (V100, 64 GPUs)", offers=offers(), origin=T0)
    readable_png(png)
    fig = fan_figure(history, fc, plan, "p", origin=T0)
    assert "planned training run" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_naive_timestamps_and_an_empty_forecast_still_draw(readable_png):
    history, fc = frames()
    history["ds"] = history["ds"].dt.tz_localize(None)
    readable_png(fan_chart(history, fc.iloc[0:0], title="no forecast"), min_bytes=10_000)
