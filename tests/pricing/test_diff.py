"""pricing.diff.diff_items: which prices moved more than the threshold, and why."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from pricing.diff import DIFF_COLS, diff_items

T0 = pd.Timestamp("2025-03-04", tz="UTC")
H = pd.Timedelta(hours=6)


def item(pool: str, product: str, start: pd.Timestamp, price: float, **kw) -> dict:
    d = dict(pool=pool, product=product, start=start, price_per_gpu_hour=price, gpus_offered=10, offered=True,
             expected_idle_gpus=30.0 if product == "spot" else np.nan,
             window_min_quantile=np.nan if product == "spot" else 20.0, gpus_total=64,
             reference_price=3.0, reference_sku="p5.48xlarge", reference_provider="aws", guardrails=[])
    d.update(kw)
    return d


def frames():
    old = pd.DataFrame([
        item("p1", "spot", T0, 2.70),                                                   # A: reference moves
        item("p1", "spot", T0 + H, 2.00),                                               # B: forecast moves
        item("p1", "reserved_7d", T0, 3.00, reference_price=4.5),                        # C: clipped
        item("p1", "spot", T0 + 2 * H, 2.00),                                           # D: small move
        item("p1", "spot", T0 + 3 * H, 2.00),                                           # U: unchanged
        item("p1", "reserved_30d", T0, 3.50, reference_price=4.5),                       # R: removed
        item("p3", "spot", T0, 1.00, reference_price=1.5),                              # N: nearest match
    ])
    new = pd.DataFrame([
        item("p1", "spot", T0, 2.25, reference_price=2.5, reference_sku="p5e.48xlarge"),  # A: -16.7%
        item("p1", "spot", T0 + H, 2.30, expected_idle_gpus=50.0),                      # B: +15%
        item("p1", "reserved_7d", T0, 2.50, reference_price=4.5, guardrails=["ceiling"]),  # C: -16.7%
        item("p1", "spot", T0 + 2 * H, 2.09),                                           # D: +4.5%
        item("p1", "spot", T0 + 3 * H, 2.00),                                           # U
        item("p2", "spot", T0, 1.10),                                                   # F: new pool, added
        item("p3", "spot", T0 + pd.Timedelta(days=1), 1.20, reference_price=1.5),       # N: +20% vs nearest
        item("p1", "reserved_1d", T0, np.nan, offered=False),                           # withdrawn: ignored
    ])
    return new, old


def test_moves_are_explained():
    new, old = frames()
    diff, counts = diff_items(new, old)
    assert list(diff.columns) == DIFF_COLS
    by = {(r.pool, r.product, r.start): r for r in diff.itertuples()}
    assert set(by) == {("p1", "spot", T0), ("p1", "spot", T0 + H), ("p1", "reserved_7d", T0),
                       ("p3", "spot", T0 + pd.Timedelta(days=1))}

    a = by[("p1", "spot", T0)]
    assert a.old_price == 2.70 and a.new_price == 2.25 and a.change == pytest.approx(2.25 / 2.70 - 1)
    assert "reference moved" in a.reasons and "p5.48xlarge" in a.reasons and "p5e.48xlarge" in a.reasons
    assert "forecast moved" not in a.reasons and "guardrail hit" not in a.reasons

    b = by[("p1", "spot", T0 + H)]
    assert "forecast moved" in b.reasons and "30.0 -> 50.0" in b.reasons
    assert "reference moved" not in b.reasons and "guardrail hit" not in b.reasons

    c = by[("p1", "reserved_7d", T0)]
    assert "guardrail hit: ceiling" in c.reasons
    assert "forecast moved" not in c.reasons and "reference moved" not in c.reasons

    n = by[("p3", "spot", T0 + pd.Timedelta(days=1))]
    assert n.old_price == 1.00 and n.new_price == 1.20
    assert n.old_start == T0 and b.old_start == b.start  # which old block a new one was judged against
    assert "optimizer" in n.reasons   # nothing underneath moved


def test_counts():
    new, old = frames()
    diff, counts = diff_items(new, old)
    # added: F (new pool) and N (new start); removed: R and N's old start; the withdrawn item is ignored
    assert counts == {"added": 2, "removed": 2, "changed": 4, "unchanged": 2}
    assert counts["changed"] == len(diff)


def test_small_moves_and_threshold():
    new, old = frames()
    diff, _ = diff_items(new, old)
    assert ("p1", "spot", T0 + 2 * H) not in set(zip(diff["pool"], diff["product"], diff["start"]))
    looser, counts = diff_items(new, old, threshold=0.20)
    # only N (+20.0%, not strictly more than 20%) ... and nothing else passes a 20% threshold
    assert len(looser) == 0 and counts["changed"] == 0
    tighter, _ = diff_items(new, old, threshold=0.04)
    assert ("p1", "spot", T0 + 2 * H) in set(zip(tighter["pool"], tighter["product"], tighter["start"]))


def test_gpus_offered_change_is_a_forecast_move():
    new, old = frames()
    new.loc[0, ["reference_price", "reference_sku"]] = [3.0, "p5.48xlarge"]
    new.loc[0, "gpus_offered"] = 4
    diff, _ = diff_items(new, old)
    r = diff[(diff["start"] == T0) & (diff["product"] == "spot") & (diff["pool"] == "p1")].iloc[0]
    # (old counts come back as floats when some new item has no old match: "10.0 -> 4")
    assert re.match(r"forecast moved: GPUs offered 10(\.0)? -> 4\b", r.reasons), r.reasons
    assert "reference moved" not in r.reasons


def test_no_last_sheet_everything_is_added():
    new, _ = frames()
    for old in (None, new.iloc[:0]):
        diff, counts = diff_items(new, old)
        assert diff.empty and list(diff.columns) == DIFF_COLS
        assert counts == {"added": 7, "removed": 0, "changed": 0, "unchanged": 0}


@pytest.mark.parametrize("unit", ["s", "ns"])
def test_old_sheet_at_another_timestamp_resolution(unit):
    new, old = frames()
    want, want_counts = diff_items(new, old)
    old = old.assign(start=old["start"].dt.as_unit(unit))
    got, counts = diff_items(new, old)
    assert counts == want_counts
    pd.testing.assert_frame_equal(got.drop(columns="start"), want.drop(columns="start"))
