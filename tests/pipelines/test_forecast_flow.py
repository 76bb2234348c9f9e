"""train_forecaster and forecast on the real Prefect engine, DuckDB file and MLflow sqlite store."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from pipelines.settings import ForecastSettings, Settings
from conftest import load_fleet
from warehouse.db import connect
from warehouse.synthetic import FleetSpec, write_fleet

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    tmp = tmp_path_factory.mktemp("fc")
    files = write_fleet(FleetSpec(pools=3, nodes_per_pool=4, days=21, interval_s=600, seed=3), tmp / "fleet")
    s = Settings(
        var_dir=tmp / "var",
        forecast=ForecastSettings(
            models=["naive", "snaive_24", "lgbm"], backtest_windows=2, backtest_horizon_hours=24,
            horizon_hours=48, daily_horizon_days=3, lgbm_n_estimators=60, lgbm_max_train_rows=30_000,
            fan_charts=2, experiment="test-forecasting", registered_model="test-forecaster",
        ),
    )
    load_fleet(s, files)
    return s


def test_train_logs_everything_and_registers_a_champion_then_forecast_is_idempotent(settings: Settings) -> None:
    from pipelines.forecast_flow import forecast, horizon_from, train_forecaster

    out = train_forecaster(settings=settings)
    assert out["promoted"] and out["version"] == "1"
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    run = client.get_run(out["run_id"])
    p, m = run.data.params, run.data.metrics
    assert p["forecast.backtest_windows"] == "2" and p["data.pools"] == "3" and len(p["data.hash"]) > 16
    assert p["data.start"].startswith("2026-01-05")
    for model in ("naive", "snaive_24", "lgbm", "selected"):
        for k in ("mae", "mase_median", "pinball", "coverage80", "coverage90"):
            assert f"{model}.{k}" in m, f"{model}.{k}"
    assert m["naive.mae_vs_naive"] == pytest.approx(1.0)
    assert any(k.startswith("pool.") and k.endswith(".mase") for k in m)
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "backtest")}
    assert {"backtest/metrics_overall.csv", "backtest/metrics_per_pool.csv", "backtest/backtest.parquet"} <= arts
    charts = client.list_artifacts(run.info.run_id, "fan_charts")
    assert len(charts) == 2 and all(c.path.endswith(".png") for c in charts)
    png = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=charts[0].path))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert str(client.get_model_version_by_alias("test-forecaster", "champion").version) == "1"

    fc1 = forecast(settings=settings)
    H = horizon_from(pd.Timestamp(fc1["origin"]), settings.forecast)
    assert H >= 48 + 24 and fc1["hourly_rows"] == 3 * H and fc1["daily_rows"] == 3 * 3
    con = connect(settings.duckdb_path, read_only=True)
    n1 = con.execute("SELECT grain, count(*) FROM forecasts GROUP BY grain ORDER BY grain").fetchall()
    bad = con.execute("SELECT count(*) FROM forecasts WHERE NOT (q05 <= q10 AND q10 <= q25 AND q25 <= q50 "
                      "AND q50 <= q75 AND q75 <= q90 AND q90 <= q95 AND q05 >= 0 AND q95 <= gpus_total)").fetchall()
    con.close()
    assert n1 == [("day", 9), ("hour", 3 * H)] and bad == [(0,)]
    fc2 = forecast(settings=settings)
    assert fc2["forecast_id"] == fc1["forecast_id"]
    con = connect(settings.duckdb_path, read_only=True)
    assert con.execute("SELECT grain, count(*) FROM forecasts GROUP BY grain ORDER BY grain").fetchall() == n1
    assert con.execute("SELECT count(*) FROM forecast_runs").fetchall() == [(1,)]
    con.close()

    # the same data again: the new version's backtest ties the champion, so champion stays v1
    again = train_forecaster(settings=settings)
    assert again["version"] == "2" and not again["promoted"]
    assert str(client.get_model_version_by_alias("test-forecaster", "champion").version) == "1"
