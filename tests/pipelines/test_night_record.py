"""A night's parent run compares: two replayed nights on the bundled sample (split on 2020-05-16),
real Prefect engine, MLflow sqlite store and DuckDB file. The second night judges the first night's
promises on the days it did not know, and says so in metrics, description and summary.md."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from pipelines.settings import ForecastSettings, NightlySettings, PricingSettings, Settings

pytestmark = pytest.mark.usefixtures("prefect_harness")
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "helios_earth_sample.parquet"
SPLIT = pd.Timestamp("2020-05-16", tz="UTC")


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory):
    from pipelines.nightly_flow import nightly

    tmp = tmp_path_factory.mktemp("night_record")
    df = pd.read_parquet(SAMPLE)
    first, rest = tmp / "first.parquet", tmp / "rest.parquet"
    df[df["ts"] < SPLIT].to_parquet(first, index=False)
    df[df["ts"] >= SPLIT].to_parquet(rest, index=False)
    s = Settings(
        var_dir=tmp / "var",
        forecast=ForecastSettings(models=["naive", "snaive_24"], backtest_windows=1, fan_charts=0,
                                  experiment="t-r-fc", registered_model="t-r-fc"),
        pricing=PricingSettings(experiment="t-r-price"),
        nightly=NightlySettings(replay=True, experiment="t-r-nightly", fan_charts=0),
    )
    s.ensure_dirs()
    one = nightly(settings=s, paths=[str(first)])
    two = nightly(settings=s, paths=[str(rest)], retrain="never")
    return s, one, two


def test_the_second_night_judges_the_first_nights_promises(two_nights):
    s, one, two = two_nights
    assert one["status"] == two["status"] == "published"
    c = mlflow.MlflowClient(s.mlflow_tracking_uri)
    m = c.get_run(two["mlflow_run_id"]).data.metrics
    # night 1 sold from 2020-05-16 00:00; night 2 saw up to 2020-05-19 15:00: blocks and 1-day leases ended
    assert m["live.spot_blocks_ended"] > 0 and 0 <= m["live.spot_interrupted"] <= 1
    assert 0 < m["live.spot_risk_published"] < 1
    assert m["live.reserved_leases_ended"] >= 1 and 0 <= m["live.reserved_kept"] <= 1
    assert m["live.forecast_hours"] > 0
    assert m["live.forecast_mae"] > 0 and m["live.persistence_mae"] > 0 and m["live.snaive_mae"] > 0
    first = c.get_run(one["mlflow_run_id"]).data.metrics
    assert first["live.spot_blocks_ended"] == 0  # nothing had been sold before the first night


def test_the_parent_run_has_the_nights_numbers_params_and_headline(two_nights):
    s, _, two = two_nights
    run = mlflow.MlflowClient(s.mlflow_tracking_uri).get_run(two["mlflow_run_id"])
    m, p = run.data.metrics, run.data.params
    price = two["price"]["metrics"]
    for k in ("items.offered", "items.offered.spot", "gpu_hours.offered.spot", "revenue.expected", "discount.mean",
              "guardrail.ceiling", "guardrail.max_change", "pools.held", "ingest.rows_loaded"):
        assert k in m, k
    assert m["items.offered"] == price["items.offered"] > 0
    assert m["gpu_hours.offered"] == sum(v for k, v in m.items() if k.startswith("gpu_hours.offered."))
    assert p["pricing.reserved_break_target"] == "0.05" and p["pricing.max_daily_change"] == "0.15"
    assert p["retrain"] == "never" and p["pricing.overrides"] == "none"
    head = run.data.tags["mlflow.note.content"]
    assert head.startswith(f"published sheet v{two['sheet_version']}; {m['items.offered']:,.0f} items")
    summary = Path(mlflow.MlflowClient(s.mlflow_tracking_uri).download_artifacts(
        run.info.run_id, "summary.md", str(s.var_dir))).read_text()
    assert head in summary and "## Last week, live" in summary and "persistence" in summary
    assert "blocks ended; published interruption risk" in summary


def test_no_experiment_is_left_empty(two_nights):
    s, _, _ = two_nights
    names = {e.name for e in mlflow.MlflowClient(s.mlflow_tracking_uri).search_experiments()}
    assert "t-r-nightly" in names and not {"t-r-fc", "t-r-price"} & names  # nested runs live in the night's


def test_the_registry_version_says_what_it_was_trained_on(two_nights):
    s, _, _ = two_nights
    c = mlflow.MlflowClient(s.mlflow_tracking_uri)
    v = c.get_model_version("t-r-fc", "1")
    assert "trained on 16 pools" in v.description and "Rolling-origin backtest" in v.description
    assert "promoted to champion" in v.description
    score = v.tags["backtest_mase_median"]
    assert len(score.split(".")[1]) == 4  # 0.6607, not 0.6606667731359682


def test_tables_are_rounded_for_people_and_the_demand_table_is_never_empty(two_nights):
    s, _, two = two_nights
    c = mlflow.MlflowClient(s.mlflow_tracking_uri)
    exp = c.get_run(two["mlflow_run_id"]).info.experiment_id
    price = c.search_runs([exp], f"tags.mlflow.parentRunId = '{two['mlflow_run_id']}' and tags.kind = 'price'")[0]
    out = s.var_dir / "arts"
    found = {}
    for name in ("sheet/diff.csv", "sheet/offered.csv", "sheet/findings.csv", "demand/demand_fit.csv"):
        path = Path(c.download_artifacts(price.info.run_id, name, str(out)))
        found[name] = t = pd.read_csv(path)
        assert len(t), name
        text = path.read_text()
        decimals = [len(x.split(".")[1]) for x in __import__("re").findall(r"\b\d+\.\d+\b", text)]
        assert decimals and max(decimals) <= 4, (name, max(decimals))
    demand = found["demand/demand_fit.csv"]
    assert set(demand["product"]) >= {"spot", "reserved_1d"} and demand["source"].str.startswith("prior").all()


def test_summary_lists_every_override_and_warns_past_the_daily_cap():
    from datetime import datetime, timezone

    from pipelines.nightly_flow import summary_markdown

    t = pd.Timestamp("2020-05-20", tz="UTC")
    ov = pd.DataFrame([
        {"override": 1, "pool": "p1", "product": "spot", "action": "fixed", "reason": "desk", "items_changed": 4,
         "change_min": 0.70, "change_max": 0.80, "vs_last_min": 0.78, "vs_last_max": 0.80, "past_daily_cap": 4},
        {"override": 2, "pool": "*", "product": "reserved_7d", "action": "hold", "reason": "freeze", "items_changed": 2,
         "change_min": float("nan"), "change_max": float("nan"), "vs_last_min": 0.0, "vs_last_max": 0.0,
         "past_daily_cap": 0}])
    diff = pd.DataFrame({"pool": ["a"] * 5 + ["b"], "product": ["spot"] * 6, "start": [t] * 6,
                         "old_price": [1.0] * 6, "new_price": [1.5, 1.4, 1.3, 1.2, 1.1, 0.9],
                         "change": [0.5, 0.4, 0.3, 0.2, 0.1, -0.1], "reasons": ["x"] * 6})
    result = {"status": "published", "version": 3, "metrics": {"items.offered": 10, "overrides.entries": 2,
                                                               "overrides.items_changed": 6},
              "overrides": ov, "diff": diff,
              "warnings": ["override #1 (p1 / spot, fixed: desk) moves 4 item(s) by up to +80% against the last sheet, "
                           "past the 15% daily cap"]}
    md = summary_markdown({"started_at": datetime(2026, 1, 1, tzinfo=timezone.utc), "status": "published"}, result)
    assert "| 1 | p1 | spot | fixed | desk | 4 | +70.0% .. +80.0% | +78.0% .. +80.0% | 4 |" in md
    assert "| 2 | * | reserved_7d | hold | freeze | 2 | - | +0.0% | - |" in md
    assert "**Warning:** override #1" in md and "1 override(s) past the daily cap" in md
    moves = md.split("## Largest price moves")[1]
    assert moves.count("| a | spot |") == 1 and "| b | spot |" in moves  # one per pool and product
