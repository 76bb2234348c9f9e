"""The price flow end to end: real DuckDB file, Prefect engine, MLflow sqlite store, sheet files."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from pipelines.settings import ForecastSettings, PricingSettings, Settings
from pricing.sheet import forecast_path, latest_sheet_path, read_sheet
from conftest import load_fleet
from warehouse.db import connect
from warehouse.synthetic import FleetSpec, write_fleet

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def priced(tmp_path_factory):
    """A 4-pool synthetic fleet, trained (naive models: fast) and forecast; returns settings + as_of."""
    from pipelines.forecast_flow import forecast, train_forecaster

    tmp = tmp_path_factory.mktemp("price")
    files = write_fleet(FleetSpec(pools=4, nodes_per_pool=4, days=21, interval_s=900, seed=5), tmp / "fleet")
    s = Settings(
        var_dir=tmp / "var",
        forecast=ForecastSettings(models=["naive", "snaive_24"], backtest_windows=1, fan_charts=0,
                                  experiment="t-fc", registered_model="t-fc"),
        pricing=PricingSettings(experiment="t-price"),
    )
    load_fleet(s, files)
    train_forecaster(settings=s)
    out = forecast(settings=s)
    return s, pd.Timestamp(out["origin"]) + pd.Timedelta(minutes=30)


def test_price_publishes_a_sheet_with_references_and_logs_the_run(priced) -> None:
    from pipelines.pricing_flow import price

    s, as_of = priced
    out = price(settings=s, as_of=as_of.to_pydatetime())
    assert out["status"] == "published" and out["version"] == 1
    path = latest_sheet_path(s.sheets_dir)
    sheet = read_sheet(path)
    assert sheet["version"] == 1 and sheet["currency"] == "USD" and sheet["mlflow_run_id"] == out["mlflow_run_id"]
    assert pd.Timestamp(sheet["valid_until"]) - pd.Timestamp(sheet["valid_from"]) == pd.Timedelta(hours=24)
    items = sheet["items"]
    assert {i["product"] for i in items} >= {"spot"}
    for i in items:
        ref = i["reference"]
        assert ref["provider"] in ("aws", "azure") and ref["sku"] and ref["price"] > 0
        assert i["price_per_gpu_hour"] <= 0.9 * ref["price"] + 1e-4          # ceiling: 10% under
        assert i["price_per_gpu_hour"] >= i["floor"] - 1e-4
        assert abs(i["discount_vs_reference"] - (1 - i["price_per_gpu_hour"] / ref["price"])) < 1e-3
        assert i["gpus_offered"] >= 1 and i["guardrails"] is not None
        if i["product"] == "spot":
            assert 0 <= i["interruption_risk"] <= 1
    assert Path(str(path).replace(".json", ".parquet")).exists()
    # the forecast the sheet was priced from, for the API's internal route: its pools, from valid_from on
    fc = pd.read_parquet(forecast_path(s.sheets_dir, 1))
    assert set(fc["unique_id"]) == {i["pool"] for i in items}
    assert pd.to_datetime(fc["ds"], utc=True).min() == pd.Timestamp(sheet["valid_from"])
    assert (fc["q05"] <= fc["q95"]).all() and {"mean", "q50", "gpus_total", "origin"} <= set(fc.columns)

    client = mlflow.MlflowClient(s.mlflow_tracking_uri)
    run = client.get_run(out["mlflow_run_id"])
    assert run.data.tags["status"] == "published" and run.data.metrics["items.offered"] == len(items)
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "sheet")}
    assert {"sheet/price-sheet-000001.json", "sheet/diff.csv", "sheet/withdrawn.csv"} <= arts
    charts = client.list_artifacts(run.info.run_id, "charts")
    assert charts and all(c.path.endswith(".png") for c in charts)
    # the window-risk model sized the offers: what it learned from and its calibration are in the run
    assert run.data.tags["risk_model"] == "fitted" and run.data.metrics["risk_model.n_fit"] > 0
    cal = pd.read_csv(client.download_artifacts(run.info.run_id, "risk_model/calibration_windows.csv"))
    assert {"length_hours", "lead_hours", "windows", "pit_below_0.20"} <= set(cal.columns) and len(cal)
    con = connect(s.duckdb_path, read_only=True)
    bp = con.execute("SELECT break_probability FROM price_sheet_items WHERE version = 1 AND offered "
                     "AND product LIKE 'reserved%' AND break_probability IS NOT NULL").fetchall()
    con.close()
    assert all(b[0] <= s.pricing.reserved_break_target + 1e-9 for b in bp)  # kept with the items, internal
    assert all("break_probability" not in i and "risk_value" not in i for i in items)  # never on the public sheet

    # same inputs again: nothing new is published
    again = price(settings=s, as_of=as_of.to_pydatetime())
    assert again["status"] == "unchanged" and again["version"] == 1
    assert latest_sheet_path(s.sheets_dir) == path

    # a day later with the same forecast: telemetry is stale -> the last sheet holds, bytes unchanged
    before = path.read_bytes()
    held = price(settings=s, as_of=(as_of + pd.Timedelta(hours=24)).to_pydatetime())
    assert held["status"] == "held" and "stale telemetry" in held["reason"] and held["version"] == 1
    assert latest_sheet_path(s.sheets_dir) == path and path.read_bytes() == before
    con = connect(s.duckdb_path, read_only=True)
    runs = con.execute("SELECT status FROM pricing_runs ORDER BY run_at").fetchall()
    con.close()
    assert [r[0] for r in runs] == ["published", "unchanged", "held"]


def test_bookings_load_validates_rows_and_feed_the_demand_fit(priced) -> None:
    from pipelines.pricing_flow import price
    from warehouse.bookings import load_bookings
    from warehouse.sheets import booking_observations, sheet_items

    s, as_of = priced
    price(settings=s, as_of=as_of.to_pydatetime())  # v1 exists (or is unchanged)
    con = connect(s.duckdb_path)
    try:
        items = sheet_items(con, 1)
        allc = sheet_items(con, 1, offered_only=False)
        res = allc[allc["product"].str.startswith("reserved")]
        # stored by column name, not position: the newsvendor level is a probability, the cap is GPUs
        assert len(res) and (res["newsvendor_level"].dropna() <= s.pricing.reserved_max_quantile + 1e-9).all()
        spot = items[items["product"] == "spot"].head(3)
        good = [{"booking_id": f"b{i}", "sheet_version": 1, "pool": r.pool, "product": "spot",
                 "start": r.start.isoformat(), "gpus": 1, "price_per_gpu_hour": r.price_per_gpu_hour,
                 "booked_at": as_of.isoformat()} for i, r in enumerate(spot.itertuples())]
        first = spot.iloc[0]
        bad = [
            {**good[0], "booking_id": "x1", "pool": "no-such-pool"},
            {**good[0], "booking_id": "x2", "gpus": int(first.gpus_offered) + 1},
            {**good[0], "booking_id": "x3", "price_per_gpu_hour": -1},
            {**good[0], "booking_id": "b0"},  # repeated id in the same file
        ]
        r = load_bookings(con, pd.DataFrame(good + bad))
        assert (r.rows_in, r.loaded, r.duplicate, len(r.rejected)) == (7, 3, 0, 4)
        reasons = dict(zip(r.rejected["booking_id"], r.rejected["reason"]))
        assert reasons["x1"].startswith("no such offered item") and reasons["x2"].startswith("more GPUs")
        assert reasons["x3"].startswith("price_per_gpu_hour") and reasons["b0"] == "booking_id repeated in the file"
        again = load_bookings(con, pd.DataFrame(good))
        assert (again.loaded, again.duplicate) == (0, 3)
        obs = booking_observations(con)
        assert int(obs["gpus_booked"].sum()) == 3 and len(obs) == int(items["offered"].sum())
    finally:
        con.close()
    out = price(settings=s, as_of=as_of.to_pydatetime())  # bookings changed the inputs: re-priced
    assert out["status"] in ("published", "unchanged") and out["status"] != "held"
    con = connect(s.duckdb_path, read_only=True)
    fits = con.execute("SELECT product, source, n_items FROM demand_fits ORDER BY fitted_at DESC").df()
    con.close()
    assert len(fits) and set(fits["source"]) <= {"prior", "fit"} and fits["n_items"].max() > 0


def test_an_all_withdrawn_night_holds_and_files_are_world_readable(priced) -> None:
    from pipelines.pricing_flow import price

    s, as_of = priced
    before = latest_sheet_path(s.sheets_dir)
    wrong = s.model_copy(update={"pricing": s.pricing.model_copy(update={"providers": ["AWS"]})})  # no such provider
    out = price(settings=wrong, as_of=as_of.to_pydatetime(), force=True)
    assert out["status"] == "held" and "no item could be offered" in out["reason"]
    assert latest_sheet_path(s.sheets_dir) == before
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in Path(s.sheets_dir).iterdir() if not p.name.startswith("."))
