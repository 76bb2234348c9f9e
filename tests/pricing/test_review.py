"""pricing.review: what a night did, in the numbers a reviewer compares (hand-built items)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pricing.overrides import Override, apply_overrides
from pricing.review import binding_counts, largest_moves, offer_metrics, overridden_items, override_effects, rounded

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def _items() -> pd.DataFrame:
    rows = []
    for pool in ("a", "b"):
        for k in range(3):
            rows.append(dict(pool=pool, gpu_model="V100", product="spot", start=T0 + pd.Timedelta(hours=6 * k), hours=6,
                             gpus_offered=4, price_per_gpu_hour=0.30 if k == 0 else 0.20, ceiling=0.30, floor=0.10,
                             reference_price=0.333, guardrails=[], offered=True, expected_gpu_hours_sold=10.0,
                             last_price=0.20, discount_vs_reference=0.1))
        rows.append(dict(pool=pool, gpu_model="V100", product="reserved_7d", start=T0.ceil("D"), hours=168,
                         gpus_offered=2, price_per_gpu_hour=1.0, ceiling=1.17, floor=0.10, reference_price=1.3,
                         guardrails=["max_change"], offered=True, expected_gpu_hours_sold=100.0, last_price=0.8,
                         discount_vs_reference=0.23))
    rows.append(dict(pool="c", gpu_model="V100", product="spot", start=T0, hours=6, gpus_offered=0,
                     price_per_gpu_hour=np.nan, ceiling=0.30, floor=0.10, reference_price=0.333, guardrails=[],
                     offered=False, expected_gpu_hours_sold=np.nan, last_price=np.nan, discount_vs_reference=np.nan))
    return pd.DataFrame(rows)


def test_an_optimum_on_the_ceiling_counts_as_the_ceiling_binding():
    it = _items()
    counts = binding_counts(it[it["offered"]])
    assert counts["ceiling"] == 2  # the two blocks priced at 0.30 = ceiling, though no clamp fired
    assert counts["max_change"] == 2 and counts["floor"] == 0 and counts["override"] == 0


def test_a_reserved_price_on_its_term_ceiling_counts_as_the_ceiling():
    it = _items()
    sel = it["product"] == "reserved_7d"
    it.loc[sel, "price_per_gpu_hour"] = 1.17 * (1 - 0.05)  # on the 7-day ceiling, below the undiscounted one
    assert binding_counts(it[it["offered"]])["ceiling"] == 2  # the two spot blocks only
    assert binding_counts(it[it["offered"]], {1: 0.0, 7: 0.05})["ceiling"] == 4


def test_offer_metrics_per_product_add_up():
    m = offer_metrics(_items(), held_pools=1, overrides_log=None, diff_counts={"added": 3})
    assert m["items.offered"] == 8 and m["items.offered.spot"] == 6 and m["items.offered.reserved_7d"] == 2
    assert m["items.withdrawn"] == 1 and m["pools.offered"] == 2 and m["pools.held"] == 1
    assert m["gpu_hours.offered.spot"] == 6 * 4 * 6 and m["gpu_hours.offered.reserved_7d"] == 2 * 2 * 168
    assert m["gpu_hours.offered"] == m["gpu_hours.offered.spot"] + m["gpu_hours.offered.reserved_7d"]
    spot_rev = 2 * (10 * 0.30 + 2 * 10 * 0.20)
    assert abs(m["revenue.expected.spot"] - spot_rev) < 1e-9
    assert abs(m["revenue.expected"] - spot_rev - 2 * 100 * 1.0) < 1e-9
    assert m["guardrail.ceiling"] == 2 and m["diff.added"] == 3
    assert "items.offered.reserved_30d" not in m  # a term nobody sold does not become a zero column


def test_override_effects_say_how_much_and_warn_past_the_daily_cap():
    it = _items()
    ovs = [Override(pool="a", product="spot", reason="desk", fixed=0.29),
           Override(pool="b", product="spot", reason="nudge", max=0.21)]
    trace = []
    after, log = apply_overrides(it, ovs, None, T0, trace)
    table, warnings = override_effects(it, after, log, max_change=0.15, trace=trace)
    a = table.set_index("pool").loc["a"]
    assert a["items_changed"] == 3  # 0.30 -> 0.29 once, 0.20 -> 0.29 twice
    assert abs(a["change_max"] - (0.29 / 0.20 - 1)) < 1e-9 and abs(a["change_min"] - (0.29 / 0.30 - 1)) < 1e-9
    # all three end +45% against the last price 0.20, but 0.30 -> 0.29 moved one towards it: 2 are its doing
    assert a["past_daily_cap"] == 2
    b = table.set_index("pool").loc["b"]
    assert b["items_changed"] == 1 and b["past_daily_cap"] == 0  # 0.30 -> 0.21 is +5% vs last
    assert len(warnings) == 1 and "override #1" in warnings[0] and "+45%" in warnings[0] and "15% daily cap" in warnings[0]


def test_each_override_is_credited_with_its_own_step_and_a_hold_replaces_earlier_ones():
    """The reviewer's case: a fixed price raises pool a past the cap, a fleet-wide max then trims it
    (and b); a hold on b replaces what the max did there. Each entry gets its own step; the
    headline counts distinct items."""
    it = _items()
    last = it[it["offered"]].copy()  # the last sheet: every item at its last price
    last["price_per_gpu_hour"] = last["last_price"]
    ovs = [Override(pool="a", product="spot", reason="desk", fixed=0.29),
           Override(pool="*", product="spot", reason="cap", max=0.27),
           Override(pool="b", product="*", reason="freeze b", hold=True)]  # 4 items: not its number (3)
    trace = []
    after, log = apply_overrides(it, ovs, last, T0, trace)
    table, warnings = override_effects(it, after, log, max_change=0.15, trace=trace)
    t = table.set_index("override")
    # 1: a's three blocks set to 0.29 (from 0.30 once, 0.20 twice); the two it raised end past the cap
    assert t.loc[1, "items_changed"] == 3 and abs(t.loc[1, "change_max"] - (0.29 / 0.20 - 1)) < 1e-9
    assert t.loc[1, "past_daily_cap"] == 2
    # 2: trimmed a from 0.29 to 0.27 (b's change was replaced by the hold): it lowered prices, no warning
    assert t.loc[2, "items_changed"] == 3 and t.loc[2, "change_max"] < 0 and t.loc[2, "past_daily_cap"] == 0
    assert abs(t.loc[2, "vs_last_max"] - (0.27 / 0.20 - 1)) < 1e-9  # where a ended against the last sheet
    # 3: b's three blocks and its reserved item kept from the last sheet
    assert t.loc[3, "items_changed"] == 4 and t.loc[3, "past_daily_cap"] == 0
    assert len(warnings) == 1 and warnings[0].startswith("override #1")
    assert overridden_items(after, trace) == 7  # a's three and b's four, each once
    m = offer_metrics(after, 0, log, {}, overridden_items(after, trace))
    assert m["overrides.items_changed"] == 7 and m["overrides.entries"] == 3


def test_largest_moves_spread_across_pools_and_products():
    diff = pd.DataFrame({"pool": ["a"] * 6 + ["b", "c"], "product": ["spot"] * 5 + ["reserved_1d", "spot", "spot"],
                         "start": [T0 + pd.Timedelta(hours=h) for h in range(8)],
                         "change": [0.5, 0.49, 0.48, 0.47, 0.46, 0.2, -0.10, 0.06]})
    top = largest_moves(diff, 3)
    assert list(zip(top["pool"], top["product"])) == [("a", "spot"), ("b", "spot"), ("c", "spot")]
    top = largest_moves(diff, 10)
    assert len(top) == 4 and ("a", "reserved_1d") in set(zip(top["pool"], top["product"]))


def test_rounded_keeps_people_sized_numbers():
    r = rounded(pd.DataFrame({"x": [0.6606667731359682], "n": [3], "s": ["a"]}))
    assert r["x"][0] == 0.6607 and r["n"][0] == 3 and r["s"][0] == "a"
