"""The nightly flow end to end on the bundled sample: real Prefect engine, MLflow sqlite store and
DuckDB file. The tests run in file order on one var dir: night 1 publishes, night 2 (same inputs)
changes nothing, night 3 honours an override file, night 4 fails at pricing and keeps the sheet."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest

from pipelines.settings import ForecastSettings, NightlySettings, PricingSettings, Settings
from pricing.sheet import latest_sheet_path, read_sheet
from warehouse.db import connect

pytestmark = pytest.mark.usefixtures("prefect_harness")
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "helios_earth_sample.parquet"


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """Settings (fast candidate models) and the result of the first night on the sample."""
    from pipelines.nightly_flow import nightly

    tmp = tmp_path_factory.mktemp("nightly")
    s = Settings(
        var_dir=tmp / "var",
        forecast=ForecastSettings(models=["naive", "snaive_24"], backtest_windows=1, fan_charts=2,
                                  experiment="t-n-fc", registered_model="t-n-fc"),
        pricing=PricingSettings(experiment="t-n-price"),
        nightly=NightlySettings(inbox=[str(SAMPLE)], replay=True, experiment="t-nightly", fan_charts=3),
    )
    s.ensure_dirs()
    out = nightly(settings=s)
    return s, out


def _counts(s: Settings) -> dict[str, int]:
    con = connect(s.duckdb_path, read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("telemetry", "pool_hourly", "forecasts", "forecast_runs", "price_sheets", "price_sheet_items",
                          "pricing_runs", "quarantine")}
    finally:
        con.close()


def _nights(s: Settings) -> pd.DataFrame:
    from warehouse.nightly import last_nights

    con = connect(s.duckdb_path, read_only=True)
    try:
        return last_nights(con, 20)
    finally:
        con.close()


def test_first_night_publishes_and_the_run_tree_is_reviewable(night):
    s, out = night
    assert out["status"] == "published" and out["sheet_version"] == 1 and out["trained"] is True
    assert "no champion" in out["train_reason"]
    sheet = read_sheet(latest_sheet_path(s.sheets_dir))
    assert sheet["version"] == 1 and len(sheet["items"]) > 0
    assert pd.Timestamp(sheet["valid_from"]) == pd.Timestamp("2020-05-19 16:00", tz="UTC")  # replay: hour after the data
    n = _nights(s).iloc[0]
    assert n["status"] == "published" and n["sheet_version"] == 1 and n["files_ingested"] == 1
    assert n["rows_loaded"] == 437_760 and n["mlflow_run_id"] == out["mlflow_run_id"]

    c = mlflow.MlflowClient(s.mlflow_tracking_uri)
    parent = c.get_run(out["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["kind"] == "nightly" and parent.data.tags["sheet_version"] == "1"
    assert parent.data.tags["data_end"].startswith("2020-05-19 15:00")
    kids = c.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_kind = {k.data.tags.get("kind"): k for k in kids}
    assert {"ingest", "train_forecaster", "forecast", "price"} <= set(by_kind)
    assert all(k.info.status == "FINISHED" for k in kids)
    assert by_kind["ingest"].data.metrics["rows.loaded"] == 437_760
    summary = Path(c.download_artifacts(parent.info.run_id, "summary.md", str(s.var_dir))).read_text()
    assert "**published**" in summary and "live sheet: v1" in summary and "GPU-hours offered" in summary
    price_arts = {a.path for a in c.list_artifacts(by_kind["price"].info.run_id, "sheet")}
    assert {"sheet/price-sheet-000001.json", "sheet/diff.csv", "sheet/withdrawn.csv"} <= price_arts
    gm = {k for k in by_kind["price"].data.metrics if k.startswith("guardrail.")}
    assert {"guardrail.max_change", "guardrail.floor", "guardrail.ceiling", "guardrail.override"} <= gm  # zeros too
    fans = {Path(a.path).name for a in c.list_artifacts(by_kind["forecast"].info.run_id, "fan_charts")}
    offered = {i["pool"] for i in sheet["items"]}
    assert {f"{p}.png" for p in offered} <= fans  # every pool with an offer has its chart
    assert len(fans) == len(offered) + 3  # and the 3 ([nightly] fan_charts) largest others
    assert {a.path for a in c.list_artifacts(by_kind["price"].info.run_id, "charts")} == {
        "charts/spot_V100.png", "charts/reserved_V100.png"}
    assert "nights.png" in {a.path for a in c.list_artifacts(parent.info.run_id)}


def test_same_inputs_twice_change_nothing(night):
    from pipelines.nightly_flow import nightly

    s, _ = night
    before, sheet_bytes = _counts(s), latest_sheet_path(s.sheets_dir).read_bytes()
    out = nightly(settings=s)
    assert out["status"] == "unchanged" and out["sheet_version"] == 1 and out["trained"] is False
    after = _counts(s)
    assert {k: v for k, v in after.items() if k != "pricing_runs"} == {k: v for k, v in before.items() if k != "pricing_runs"}
    assert after["pricing_runs"] == before["pricing_runs"] + 1  # the attempt is logged, nothing else moves
    assert latest_sheet_path(s.sheets_dir).read_bytes() == sheet_bytes
    assert list(_nights(s)["status"])[:2] == ["unchanged", "published"]
    # the runs table has a value for this night too: what stayed on sale (sheet v1's offer)
    c = mlflow.MlflowClient(s.mlflow_tracking_uri)
    first = c.get_run(_nights(s).iloc[1]["mlflow_run_id"]).data.metrics
    kept = c.get_run(out["mlflow_run_id"]).data.metrics
    assert kept["items.offered"] == first["items.offered"] > 0
    assert kept["gpu_hours.offered"] == first["gpu_hours.offered"]
    assert abs(kept["revenue.expected"] - first["revenue.expected"]) < 0.01


def test_an_override_file_is_honoured_by_the_next_publish(night):
    from pipelines.nightly_flow import nightly

    s, _ = night
    items = read_sheet(latest_sheet_path(s.sheets_dir))["items"]
    spot = next(i for i in items if i["product"] == "spot")
    fixed = round((spot["floor"] + spot["reference"]["price"] * 0.9) / 2, 4)  # inside floor..ceiling
    Path(s.pricing.overrides).write_text(
        f'[[override]]\npool = "{spot["pool"]}"\nproduct = "spot"\nfixed = {fixed}\nreason = "desk test"\n')
    out = nightly(settings=s, retrain="never")
    assert out["status"] == "published" and out["sheet_version"] == 2
    new = [i for i in read_sheet(latest_sheet_path(s.sheets_dir))["items"]
           if i["pool"] == spot["pool"] and i["product"] == "spot"]
    assert new and all(abs(i["price_per_gpu_hour"] - fixed) < 1e-4 for i in new)
    assert all("override:fixed:desk test" in i["guardrails"] for i in new)
    c = mlflow.MlflowClient(s.mlflow_tracking_uri)
    price_run = c.search_runs([c.get_run(out["mlflow_run_id"]).info.experiment_id],
                              f"tags.mlflow.parentRunId = '{out['mlflow_run_id']}' and tags.kind = 'price'")[0]
    arts = {a.path for a in c.list_artifacts(price_run.info.run_id, "overrides")}
    assert {"overrides/overrides.toml", "overrides/overrides_applied.csv"} <= arts


def test_a_failure_after_publishing_is_not_called_a_failed_night(night, tmp_path):
    """MLflow artifacts cannot be written (the artifact root is a file): the new sheet is live, so the
    night says published, with warnings, and the next night builds on it."""
    from pipelines.nightly_flow import nightly

    s, _ = night
    before = read_sheet(latest_sheet_path(s.sheets_dir))["version"]
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    items = read_sheet(latest_sheet_path(s.sheets_dir))["items"]
    spot = next(i for i in items if i["product"] == "spot")
    fixed = round((spot["floor"] + spot["reference"]["price"] * 0.9) / 2 * 1.01, 4)
    Path(s.pricing.overrides).write_text(
        f'[[override]]\npool = "{spot["pool"]}"\nproduct = "spot"\nfixed = {fixed}\nreason = "desk test 2"\n')
    odd = s.model_copy(update={"mlflow_artifacts": str(blocker),
                               "nightly": s.nightly.model_copy(update={"experiment": "t-nightly-noart", "fan_charts": 0})})
    out = nightly(settings=odd, retrain="never")
    assert out["status"] == "published" and out["sheet_version"] == before + 1
    assert out["warnings"] and any("MLflow" in w or "summary" in w for w in out["warnings"])
    assert read_sheet(latest_sheet_path(s.sheets_dir))["version"] == before + 1
    n = _nights(s).iloc[0]
    assert n["status"] == "published" and n["sheet_version"] == before + 1 and pd.isna(n["failed_step"])


def test_retrain_when_due_counts_from_the_newest_training(night):
    """Cadence: from the newest registered version, promoted or not; a fresh one means no retrain."""
    import mlflow as mlf

    from pipelines.nightly_flow import retrain_decision

    s, out = night
    end = pd.Timestamp("2020-05-19 15:00", tz="UTC")
    due, why = retrain_decision.fn(s, end + pd.Timedelta(days=8), "auto")
    assert due and "days before tonight" in why
    not_due, why = retrain_decision.fn(s, end + pd.Timedelta(days=2), "auto")
    assert not not_due and "need 48 to judge" in why
    # a challenger trained later but not promoted still resets the cadence
    c = mlf.MlflowClient(s.mlflow_tracking_uri)
    champ = c.get_model_version_by_alias(s.forecast.registered_model, "champion")
    v = c.create_model_version(s.forecast.registered_model, champ.source, run_id=champ.run_id)
    c.set_model_version_tag(s.forecast.registered_model, v.version, "data_end", str(end + pd.Timedelta(days=6)))
    due, why = retrain_decision.fn(s, end + pd.Timedelta(days=8), "auto")
    assert not due and "2.0 days old" in why
    assert retrain_decision.fn(s, end, "always")[0] and not retrain_decision.fn(s, end, "never")[0]


def test_a_failed_pricing_step_keeps_the_last_sheet_and_is_recorded(night, tmp_path):
    from pipelines.nightly_flow import nightly

    s, _ = night
    live = latest_sheet_path(s.sheets_dir)
    live_bytes, live_version = live.read_bytes(), read_sheet(live)["version"]
    bad = tmp_path / "rates.csv"
    bad.write_text("provider,region\naws,us-east-1\n")  # a reference file missing its columns
    broken = s.model_copy(update={"pricing": s.pricing.model_copy(update={"reference_rates": bad})})
    Path(s.pricing.overrides).unlink()
    state = nightly(settings=broken, retrain="never", return_state=True)
    assert state.is_failed()  # the Prefect state says so
    assert latest_sheet_path(s.sheets_dir) == live and live.read_bytes() == live_bytes  # nothing published
    n = _nights(s).iloc[0]
    assert n["status"] == "failed" and n["failed_step"] == "price" and "rates.csv" in n["reason"]
    assert n["sheet_version"] == live_version  # the sheet still live
    c = mlflow.MlflowClient(s.mlflow_tracking_uri)
    parent = c.get_run(n["mlflow_run_id"])
    assert parent.info.status == "FAILED" and parent.data.tags["failed_step"] == "price"
    kids = c.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert kids and all(k.info.status in ("FINISHED", "FAILED") for k in kids)  # no run left RUNNING
    summary = Path(c.download_artifacts(parent.info.run_id, "summary.md", str(tmp_path))).read_text()
    assert "Failed at **price**" in summary and f"sheet v{live_version} stays live" in summary


def test_status_shows_the_nights_and_the_live_sheet(night, monkeypatch):
    from typer.testing import CliRunner

    from pipelines.cli import app

    s, _ = night
    monkeypatch.setenv("IDLECAP_VAR_DIR", str(s.var_dir))
    r = CliRunner().invoke(app, ["status"])
    assert r.exit_code == 0, r.output
    assert "last nightly runs" in r.output and "failed" in r.output and "published" in r.output
    assert "live sheet: v3" in r.output


def _free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def test_the_mlflow_ui_finds_the_night_over_rest(night):
    """The UI server the demo tells people to open, on this store, serves the night's run."""
    s, out = night
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", s.mlflow_tracking_uri,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
            time.sleep(0.5)
        exp = httpx.get(f"{base}/api/2.0/mlflow/experiments/get-by-name",
                        params={"experiment_name": s.nightly.experiment}).json()["experiment"]
        found = httpx.post(f"{base}/api/2.0/mlflow/runs/search", json={
            "experiment_ids": [exp["experiment_id"]], "filter": "tags.kind = 'nightly'", "max_results": 50}).json()
        ids = {r["info"]["run_id"] for r in found["runs"]}
        assert out["mlflow_run_id"] in ids
        run = httpx.get(f"{base}/api/2.0/mlflow/runs/get", params={"run_id": out["mlflow_run_id"]}).json()["run"]
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["sheet_version"] == "1" and json.dumps(tags)
        # the runs table compares nights: description, metrics and params on the parent run itself
        assert tags["mlflow.note.content"].startswith("published sheet v1; ")
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        price = out["price"]["metrics"]
        for k in ("items.offered", "items.offered.spot", "gpu_hours.offered", "revenue.expected", "discount.mean",
                  "guardrail.ceiling", "pools.held", "live.spot_blocks_ended", "live.reserved_leases_ended"):
            assert k in metrics, k
        assert metrics["items.offered"] == price["items.offered"] and metrics["guardrail.ceiling"] == price["guardrail.ceiling"]
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params["pricing.reserved_break_target"] == str(s.pricing.reserved_break_target)
        assert {"pricing.max_daily_change", "pricing.spot_offer_quantile", "forecast.models", "retrain"} <= set(params)
        # sortable across nights: the search API orders the night runs by a parent metric
        ranked = httpx.post(f"{base}/api/2.0/mlflow/runs/search", json={
            "experiment_ids": [exp["experiment_id"]], "filter": "tags.kind = 'nightly' and metrics.items.offered > 0",
            "order_by": ["metrics.`gpu_hours.offered` DESC"], "max_results": 50}).json()["runs"]
        assert out["mlflow_run_id"] in {r["info"]["run_id"] for r in ranked}
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:  # the test is about what the UI serves, not how fast it stops
            os.killpg(proc.pid, 9)
            proc.wait(15)


def test_the_schedule_is_the_configured_cron_and_prefect_yaml_agrees():
    import yaml

    from pipelines.nightly_flow import nightly_deployment

    s = Settings(nightly=NightlySettings(cron="30 3 * * 1-5", timezone="Europe/Paris"))
    dep = nightly_deployment(s)
    sched = dep.schedules[0].schedule
    assert (sched.cron, sched.timezone, dep.name) == ("30 3 * * 1-5", "Europe/Paris", "idlecap-nightly")
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "prefect.yaml").read_text())
    d = doc["deployments"][0]
    assert d["entrypoint"] == "pipelines/nightly_flow.py:nightly" and d["name"] == Settings().nightly.deployment
    assert d["schedules"][0]["cron"] == Settings().nightly.cron


def test_idlecap_schedule_really_runs_the_night_on_its_cron(tmp_path):
    """`idlecap schedule` without PREFECT_API_URL: a local Prefect server, the deployment on a cron
    (every minute here), and a night that really runs (an empty warehouse: it fails, and says so)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDLECAP_", "PREFECT_API"))}
    env.update({"IDLECAP_VAR_DIR": str(tmp_path / "var"), "IDLECAP_NIGHTLY__PREFECT_PORT": str(port),
                "PREFECT_HOME": str(tmp_path / "prefect"), "IDLECAP_NIGHTLY__EXPERIMENT": "t-sched",
                "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    log = (tmp_path / "schedule.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "schedule", "--cron", "* * * * *"],
                            cwd=Path(__file__).resolve().parents[2], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline, states = time.monotonic() + 240, []
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "schedule.log").read_text()[-3000:]
            try:
                done = {"flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}}}
                runs = httpx.post(f"{api}/flow_runs/filter", json={**done, "limit": 5}, timeout=5).json()
                states = [r["state_type"] for r in runs if r.get("deployment_id")]
            except (httpx.TransportError, ValueError):
                states = []
            if any(st in ("COMPLETED", "FAILED", "CRASHED") for st in states):
                break
            time.sleep(2)
        assert any(st in ("COMPLETED", "FAILED") for st in states), (states, (tmp_path / "schedule.log").read_text()[-3000:])
        con = connect(tmp_path / "var" / "idlecap.duckdb", read_only=True)
        try:
            row = con.execute("SELECT status, failed_step, reason FROM nightly_runs").fetchall()
        finally:
            con.close()
        assert row and row[0][0] == "failed" and "pool_hourly is empty" in row[0][2]
    finally:
        os.killpg(proc.pid, 15)  # as systemd stops a unit: the whole group; the runner must still exit
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            raise AssertionError("`idlecap schedule` did not exit 30 s after SIGTERM:\n"
                                 + (tmp_path / "schedule.log").read_text()[-3000:]) from None
