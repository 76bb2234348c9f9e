"""The night's review charts: which pools get a fan chart, and what lands in MLflow (the real store
the nights use, sqlite + local artifacts in a temp dir, and a real DuckDB warehouse: no mocks)."""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines.night_charts import chart_pools, draw_fan_charts, log_review_charts
from pipelines.settings import NightlySettings, Settings
from pipelines.tracking import ensure_experiment
from pricing.engine import ITEM_COLS
from warehouse.db import connect
from warehouse.nightly import record_night
from warehouse.sheets import insert_sheet

T0 = pd.Timestamp("2024-03-04 16:00", tz="UTC")
QS = ["q05", "q10", "q25", "q50", "q75", "q90", "q95"]
CAPS = {"a": 16.0, "b": 64.0, "c": 32.0, "d": 128.0, "e": 96.0, "f": 256.0}  # f has no forecast


def series() -> pd.DataFrame:
    ds = pd.date_range(T0 - pd.Timedelta(days=5), T0 - pd.Timedelta(hours=1), freq="h")
    return pd.concat([pd.DataFrame({"unique_id": p, "ds": ds, "y": cap if p == "a" else cap / 2, "gpus_total": cap,
                                    "gpu_model": "V100"}) for p, cap in CAPS.items()], ignore_index=True)


def forecast_rows(fid: str) -> pd.DataFrame:
    ds = pd.date_range(T0, T0 + pd.Timedelta(days=30), freq="h", inclusive="left")
    out = []
    for p, cap in CAPS.items():
        if p == "f":
            continue
        q = {k: np.clip(cap / 2 + (i - 3) * cap / 10, 0, cap) for i, k in enumerate(QS)}
        out.append(pd.DataFrame({"forecast_id": fid, "grain": "hour", "unique_id": p, "ds": ds, "model": "naive",
                                 "mean": cap / 2, **q, "gpus_total": cap, "origin": T0, "run_id": "r"}))
    return pd.concat(out, ignore_index=True)


def offered_items() -> pd.DataFrame:
    """Pool a: spot blocks and a 7-day term; pool b: a 30-day term. Pools c-f offer nothing."""
    spot = pd.DataFrame({"pool": "a", "product": "spot", "start": pd.date_range(T0 + pd.Timedelta(hours=2), periods=28,
                                                                                 freq="6h"), "hours": 6, "gpus_offered": 3})
    res = pd.DataFrame({"pool": ["a", "b"], "product": ["reserved_7d", "reserved_30d"], "start": T0 + pd.Timedelta(hours=8),
                        "hours": [168, 720], "gpus_offered": [8, 20]})
    it = pd.concat([spot, res], ignore_index=True)
    it["end"] = it["start"] + pd.to_timedelta(it["hours"], unit="h")
    it = it.assign(gpu_model="V100", offered=True, price_per_gpu_hour=0.25, reference_price=0.316, ceiling=0.284,
                   floor=0.097, expected_gpu_hours_sold=np.where(it["product"] == "spot", 15.0, np.nan),
                   gpus_total=it["pool"].map(CAPS), guardrails=[[] for _ in range(len(it))], withdraw_reason="",
                   reference_as_of=pd.Timestamp("2024-03-01"))
    return it.reindex(columns=ITEM_COLS)


def moves() -> pd.DataFrame:
    return pd.DataFrame({"pool": ["c", "c", "a"], "product": "spot", "start": T0, "old_price": 0.2, "new_price": 0.25,
                         "change": 0.25})


def test_every_pool_with_an_offer_or_a_move_gets_a_chart_then_the_largest_others():
    caps = pd.Series(CAPS)
    forecast = set(CAPS) - {"f"}
    pools = chart_pools(offered_items(), moves(), caps, forecast, extra=1)
    assert list(pools) == ["a", "b", "c", "d"]  # offers and moves by name, then the largest other with a forecast
    assert pools["a"] == "offers: spot, 7d; 1 price move" and pools["b"] == "offers: 30d"
    assert pools["c"] == "2 price moves" and pools["d"] == "largest pools, no offer or price move"
    assert list(chart_pools(offered_items(), moves(), caps, forecast, extra=0)) == ["a", "b", "c"]
    terms = pd.DataFrame({"pool": "x", "product": ["reserved_30d", "spot", "reserved_7d", "reserved_1d"]})
    assert chart_pools(terms, None, caps, forecast, extra=0) == {"x": "offers: spot, 1d, 7d, 30d"}
    # a night with nothing offered and nothing moved: the largest pools with a forecast (f has none)
    assert list(chart_pools(None, None, caps, forecast, extra=2)) == ["d", "e"]


def test_fan_charts_are_drawn_per_pool_and_a_broken_pool_costs_only_its_own(readable_png):
    pools = {"a": "offers", "b": "offers", "c": "moves"}
    plan = pd.DataFrame({"unique_id": ["a", "c"], "start": [T0 + pd.Timedelta(days=1), "not a time"],
                         "end": [T0 + pd.Timedelta(days=1, hours=6), "never"]})
    pngs, failed, per = draw_fan_charts(series(), forecast_rows("x"), plan, offered_items(), pools, T0, 7)
    assert set(pngs) == {"a", "b"} and set(failed) == {"c"} and per > 0
    for png in pngs.values():
        readable_png(png)


@pytest.fixture
def night_store(tmp_path: Path):
    """A warehouse with tonight's forecast and sheet, two nights of history, and the MLflow store the
    nights use (sqlite + local artifacts under a temp var dir; MLflow 3 refuses a plain file store)
    with the night's parent run and its finished `forecast` run."""
    s = Settings(var_dir=tmp_path / "var", nightly=NightlySettings(fan_charts=1))
    s.ensure_dirs()
    fid = "m:v1:20240304T1600Z"
    con = connect(s.duckdb_path)
    try:
        rows = forecast_rows(fid)
        con.register("rows", rows)
        con.execute(f"INSERT INTO forecasts ({', '.join(rows.columns)}) SELECT * FROM rows")
        header = {"version": 1, "generated_at": T0, "valid_from": T0, "valid_until": T0 + pd.Timedelta(hours=24),
                  "data_through": T0 - pd.Timedelta(hours=1), "mlflow_run_id": "p", "forecast_id": fid, "currency": "USD"}
        insert_sheet(con, header, "sha", "in", offered_items(), "x.json", "x.parquet")
        record_night(con, "n0", started_at=T0 - pd.Timedelta(days=1), status="failed", sheet_version=None)
        record_night(con, "n1", started_at=T0, status="published", sheet_version=1, forecast_id=fid)
    finally:
        con.close()
    client = mlflow.MlflowClient(s.mlflow_tracking_uri)
    exp = ensure_experiment(s, "t-night-charts")
    parent = client.create_run(exp, run_name="night").info.run_id
    fc_run = client.create_run(exp, run_name="forecast", tags={"mlflow.parentRunId": parent, "kind": "forecast"}).info.run_id
    client.set_terminated(fc_run, "FINISHED")  # as in the flow: the forecast step is over when charts are drawn
    return s, client, parent, fc_run, fid


def test_the_review_charts_land_on_the_forecast_and_parent_runs(night_store, tmp_path, readable_png):
    s, client, parent, fc_run, fid = night_store
    result = {"status": "published", "version": 1, "valid_from": str(T0), "items": offered_items(), "diff": moves()}
    warnings = log_review_charts(client, parent, s, series(), {"forecast_id": fid}, result)
    assert warnings == []
    fans = sorted(Path(a.path).name for a in client.list_artifacts(fc_run, "fan_charts"))
    assert fans == ["a.png", "b.png", "c.png", "d.png"]  # offers, moves, then the one largest other pool
    assert client.get_run(fc_run).data.metrics["fan_charts"] == 4
    out = tmp_path / "dl"
    out.mkdir()
    for name in fans:
        readable_png(Path(client.download_artifacts(fc_run, f"fan_charts/{name}", str(out))).read_bytes())
    assert "nights.png" in {a.path for a in client.list_artifacts(parent)}
    readable_png(Path(client.download_artifacts(parent, "nights.png", str(out))).read_bytes())


def test_a_night_that_kept_its_sheet_charts_the_sheet_in_force(night_store):
    s, client, parent, fc_run, fid = night_store
    result = {"status": "unchanged", "version": 1, "items": None, "diff": None}
    assert log_review_charts(client, parent, s, series(), {"forecast_id": fid}, result) == []
    fans = sorted(Path(a.path).name for a in client.list_artifacts(fc_run, "fan_charts"))
    assert fans == ["a.png", "b.png", "d.png"]  # the live sheet's offers (read back from the warehouse) + 1 largest
