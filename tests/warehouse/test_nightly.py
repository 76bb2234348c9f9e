"""warehouse.nightly: the night log, and last week's live errors against seasonal naive."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from warehouse.nightly import last_nights, live_errors, record_night

T0 = pd.Timestamp("2026-01-05 00:00", tz="UTC")


def test_record_night_inserts_then_updates_by_name(con):
    record_night(con, "n1", started_at=T0.to_pydatetime(), status="running")
    record_night(con, "n1", status="published", sheet_version=3, finished_at=(T0 + pd.Timedelta(minutes=5)).to_pydatetime())
    rows = last_nights(con)
    assert len(rows) == 1 and rows.iloc[0]["status"] == "published" and rows.iloc[0]["sheet_version"] == 3
    with pytest.raises(ValueError, match="unknown nightly_runs columns"):
        record_night(con, "n1", bogus=1)


def _hourly(con, pool: str, values: dict[pd.Timestamp, float]) -> None:
    for ts, y in values.items():
        con.execute("INSERT INTO pool_hourly (pool, ts, gpu_model, gpus_total, gpus_busy, idle_gpu_hours, coverage, samples,"
                    " nodes_reporting, nodes_expected, quality_flag, refreshed_at) VALUES (?, ?, 'V100', 10, ?, ?, 1, 60, 1, 1,"
                    " NULL, now())", [pool, ts.to_pydatetime(), 10 - y, y])


def test_live_errors_scores_stored_forecasts_on_observed_hours(con):
    hours = pd.date_range(T0 - pd.Timedelta(hours=24), periods=72, freq="h")
    _hourly(con, "p", {h: float(h.hour % 5) for h in hours})  # realized idle GPUs
    origin = T0 + pd.Timedelta(hours=24)
    for version, fid, offset in (("1", "f-v1", 1.0), ("2", "f-v2", 3.0)):
        con.execute("INSERT INTO forecast_runs VALUES (?, ?, ?, 'm', ?, 'r', 24, 0, 1, now())",
                    [fid, origin.to_pydatetime(), (origin - pd.Timedelta(hours=1)).to_pydatetime(), version])
        for h in range(30):  # 24 scored hours + 6 after `until`
            ds = origin + pd.Timedelta(hours=h)
            truth = float(ds.hour % 5)
            con.execute("INSERT INTO forecasts VALUES (?, 'hour', 'p', ?, 'm', ?, 0,0,0,0,0,0,0, 10, ?, 'r')",
                        [fid, ds.to_pydatetime(), truth + offset, origin.to_pydatetime()])
    until = (origin + pd.Timedelta(hours=23)).to_pydatetime()
    since = (origin - pd.Timedelta(days=7)).to_pydatetime()
    e = live_errors(con, since, until, 24, 0.5, model_version="1")
    assert e["n"].tolist() == [24] and e["mae"].iloc[0] == pytest.approx(1.0)
    assert e["mae_snaive"].iloc[0] == pytest.approx(0.0)  # the series repeats daily: seasonal naive is exact
    assert live_errors(con, since, until, 24, 0.5, model_version="2")["mae"].iloc[0] == pytest.approx(3.0)
    both = live_errors(con, since, until, 24, 0.5)
    assert both["n"].iloc[0] == 48 and both["mae"].iloc[0] == pytest.approx(2.0)
    assert live_errors(con, datetime(2030, 1, 1, tzinfo=timezone.utc), datetime(2030, 2, 1, tzinfo=timezone.utc)).empty
