"""pricing.live_review: last week's promises scored on a hand-built pool whose answers are known."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pricing.live_review import outcomes, week_metrics

T0 = pd.Timestamp("2026-03-02", tz="UTC")
H = pd.Timedelta(hours=1)


def _actual(y_min: np.ndarray) -> pd.DataFrame:
    hours = pd.date_range(T0, periods=len(y_min), freq="h")
    return pd.DataFrame({"unique_id": "p", "ds": hours, "y": y_min + 1.0, "y_min": y_min})


def _item(version, product, start, hours, gpus, risk=0.0, live_until=None):
    return dict(version=version, valid_from=T0, live_until=live_until, pool="p", product=product, start=start,
                end=start + hours * H, hours=hours, gpus_offered=gpus, interruption_risk=risk, price_per_gpu_hour=1.0)


def test_spot_blocks_break_on_one_sample_under_reserved_plus_spot():
    y = np.full(72, 10.0)
    y[8] = 6.0     # block 2 (6-12 h): 6 idle < 3 reserved + 4 spot -> interrupted
    y[14] = 7.0    # block 3 (12-18 h): 7 = 3 + 4 -> holds
    items = pd.DataFrame([
        _item(1, "reserved_1d", T0, 24, 3),
        *[_item(1, "spot", T0 + 6 * k * H, 6, 4, risk=0.25) for k in range(4)],
    ])
    spot, res = outcomes(items, _actual(y), T0 + 72 * H)
    assert list(spot["interrupted"]) == [False, True, False, False]
    assert list(res["kept"]) == [True]  # 6 idle at the worst sample >= the 3 promised
    m = week_metrics(spot, res, None)
    assert m["live.spot_blocks_ended"] == 4 and m["live.spot_interrupted"] == 0.25
    assert m["live.spot_risk_published"] == 0.25 and m["live.reserved_kept"] == 1.0


def test_reserved_tranches_are_judged_on_the_whole_promise_in_their_window():
    """The 1-day tranche sits on the 7-day one: it breaks when the minimum falls under both."""
    y = np.full(24 * 8, 10.0)
    y[30] = 5.0     # day 2: the 7-day lease (4 GPUs) holds; the 1-day lease ended on day 1
    y[5] = 6.0      # day 1: 4 (7d) + 3 (1d) = 7 > 6 -> the 1-day lease breaks, the 7-day one holds
    items = pd.DataFrame([_item(1, "reserved_7d", T0, 168, 4), _item(1, "reserved_1d", T0, 24, 3)])
    _, res = outcomes(items, _actual(y), T0 + 8 * 24 * H)
    kept = dict(zip(res["product"], res["kept"]))
    assert kept == {"reserved_7d": True, "reserved_1d": False}
    one = res.set_index("product").loc["reserved_1d"]
    assert one["safe_gpu_hours"] == 2 * 24 and one["offered_gpu_hours"] == 3 * 24  # 6 - 4 = 2 of its 3 GPUs held
    m = week_metrics(pd.DataFrame(), res, None)
    assert m["live.reserved_kept"] == 0.5
    assert abs(m["live.reserved_gpu_hours_kept"] - (4 * 168 + 2 * 24) / (4 * 168 + 3 * 24)) < 1e-12


def test_only_ended_observed_blocks_of_the_sheet_live_at_their_start_are_judged():
    y = np.full(48, 10.0)
    y[12:18] = np.nan  # block 3 unobserved
    items = pd.DataFrame([
        _item(1, "spot", T0, 6, 2, live_until=T0 + 6 * H),            # sheet 1 live until 6 h
        _item(1, "spot", T0 + 6 * H, 6, 2, live_until=T0 + 6 * H),    # started after sheet 2 took over: not sheet 1's
        _item(2, "spot", T0 + 6 * H, 6, 3),
        _item(2, "spot", T0 + 12 * H, 6, 3),                           # unobserved
        _item(2, "spot", T0 + 40 * H, 6, 3),                           # ends after `until`
    ])
    actual = _actual(y)
    actual.loc[actual["y_min"].isna(), "y"] = np.nan
    spot, _ = outcomes(items, actual, T0 + 36 * H)
    assert list(zip(spot["version"], spot["start"])) == [(1, T0), (2, T0 + 6 * H)]


def test_week_metrics_weigh_forecast_errors_by_points():
    errors = pd.DataFrame({"pool": ["a", "b"], "n_common": [10, 30], "mae_common": [1.0, 2.0],
                           "mae_persistence": [2.0, 2.0], "mae_snaive_common": [3.0, 1.0]})
    m = week_metrics(pd.DataFrame(), pd.DataFrame(), errors)
    assert m["live.forecast_hours"] == 40 and m["live.forecast_mae"] == (10 + 60) / 40
    assert m["live.persistence_mae"] == 2.0 and m["live.snaive_mae"] == (30 + 30) / 40
    assert m["live.spot_blocks_ended"] == 0 and "live.spot_interrupted" not in m


def test_a_lease_still_running_holds_its_gpus_under_ended_blocks_and_shorter_tranches():
    """The review runs mid-week: a 7-day lease that has not ended still sits under last night's
    spot blocks and under the 1-day tranche that started with it."""
    y = np.full(48, 10.0)
    y[3] = 7.0    # day 1, block 1: 7 idle < 4 (7d, running) + 2 (1d) + 2 (spot) -> the block is interrupted
    y[26] = 7.0   # day 2: only the 7-day lease and the spot block stand: 7 >= 4 + 2, the block holds
    items = pd.DataFrame([
        _item(1, "reserved_7d", T0, 168, 4), _item(1, "reserved_1d", T0, 24, 2),
        _item(1, "spot", T0, 6, 2, risk=0.1), _item(1, "spot", T0 + 24 * H, 6, 2, risk=0.1),
    ])
    spot, res = outcomes(items, _actual(y), T0 + 48 * H)
    assert list(spot["interrupted"]) == [True, False]
    assert list(res["product"]) == ["reserved_1d"]  # the 7-day lease is not judged before it ends
    assert list(res["kept"]) == [True]               # 7 idle >= 4 under it + its 2
    y[5] = 5.0    # now day 1 dips to 5: under 4 + 2, the 1-day tranche breaks although 5 >= its own 2
    _, res = outcomes(items, _actual(y), T0 + 48 * H)
    assert list(res["kept"]) == [False] and res["safe_gpu_hours"].iloc[0] == 1 * 24
