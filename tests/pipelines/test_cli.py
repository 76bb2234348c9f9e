"""The `idlecap` CLI end to end: generate -> ingest (real Prefect flow) -> status."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


@pytest.fixture
def var(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("IDLECAP_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "var"


@pytest.mark.usefixtures("prefect_harness")
def test_generate_ingest_status(var: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["generate", str(tmp_path / "fleet"), "--pools", "2", "--nodes-per-pool", "3",
                            "--days", "2", "--interval-s", "300"])
    assert r.exit_code == 0, r.output
    assert "telemetry rows" in r.output
    r = runner.invoke(app, ["ingest", str(tmp_path / "fleet" / "telemetry"), "--source", "canonical"])
    assert r.exit_code == 0, r.output
    assert "quarantined 0" in r.output and "2026-01-05.parquet" in r.output
    r = runner.invoke(app, ["calendar", "ingest", str(tmp_path / "fleet" / "calendar.csv")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["status"])
    assert r.exit_code == 0, r.output
    for pool in ("pool-00-h100", "pool-01-a100"):
        assert pool in r.output
    assert (var / "idlecap.duckdb").exists()


def test_unknown_source_is_a_clear_usage_error(var: Path) -> None:
    r = runner.invoke(app, ["ingest", "x.csv", "--source", "slurm"])
    assert r.exit_code == 2
    assert "unknown source 'slurm'" in r.output


def test_status_without_a_warehouse_says_what_to_do(var: Path) -> None:
    r = runner.invoke(app, ["status"])
    assert r.exit_code == 1 and "run `idlecap ingest` first" in r.output


@pytest.mark.usefixtures("prefect_harness")
def test_backtest_train_forecast_commands_on_the_bundled_sample(var: Path) -> None:
    from pipelines.cli import SAMPLE_DIR

    r = runner.invoke(app, ["ingest", str(SAMPLE_DIR / "helios_earth_sample.parquet")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["forecast"])
    assert r.exit_code == 1 and "run `idlecap train` first" in r.output
    r = runner.invoke(app, ["backtest", "--windows", "2", "--horizon", "24", "--models", "naive,snaive_24"])
    assert r.exit_code == 0, r.output
    assert "MASE median" in r.output and "snaive_24" in r.output and "selected" in r.output
    r = runner.invoke(app, ["backtest", "--models", "prophet"])
    assert r.exit_code == 2 and "unknown model(s) ['prophet']" in r.output
    r = runner.invoke(app, ["train", "--windows", "2", "--models", "naive,snaive_24,snaive_168"])
    assert r.exit_code == 0, r.output
    assert "promoted to champion" in r.output
    r = runner.invoke(app, ["forecast"])
    assert r.exit_code == 0, r.output
    assert "vc3sl" in r.output and "daily rows" in r.output


def test_api_key_create_list_revoke(var: Path) -> None:
    """The key is printed once and never stored or listed; revoking marks it."""
    r = runner.invoke(app, ["api-key", "create", "--scope", "customer", "--name", "acme"])
    assert r.exit_code == 0, r.output
    key = r.output.strip().splitlines()[-1]
    assert key.startswith("ick_")
    key_id = key.split("_")[1]
    stored = (var / "api_keys.json").read_text()
    assert key not in stored and key.split("_", 2)[2] not in stored and key_id in stored
    r = runner.invoke(app, ["api-key", "list"])
    assert r.exit_code == 0 and key_id in r.output and "acme" in r.output and key.split("_", 2)[2] not in r.output
    assert runner.invoke(app, ["api-key", "revoke", key_id]).exit_code == 0
    from api.keys import read_keys

    assert read_keys(var / "api_keys.json")[key_id].revoked_at is not None
    r = runner.invoke(app, ["api-key", "create", "--scope", "admin"])
    assert r.exit_code == 2 and "customer, internal" in r.output
    assert runner.invoke(app, ["api-key", "revoke", "000000000000"]).exit_code == 1


@pytest.mark.parametrize("command", [["status"], ["quarantine"], ["refresh"]])
def test_readers_say_who_holds_a_busy_warehouse_in_one_line(var: Path, monkeypatch, command: list[str]) -> None:
    from tests.warehouse.test_db import hold
    from warehouse.db import connect

    connect(var / "idlecap.duckdb").close()
    monkeypatch.setenv("IDLECAP_WAREHOUSE__BUSY_WAIT_S", "0.5")
    p = hold(var / "idlecap.duckdb", 30, purpose="ingest")
    try:
        r = runner.invoke(app, command)
    finally:
        p.kill()
        p.wait()
    assert r.exit_code == 75, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert lines[0].startswith(f"warehouse busy: ingest, PID {p.pid}, since ") and "waiting up to 0.5 s" in lines[0]
    assert "([warehouse] busy_wait_s)" in lines[0]  # the setting's name, not eaten as markup
    assert lines[-1].startswith(f"warehouse busy: ingest, PID {p.pid}") and "gave up after 0.5 s" in lines[-1]
    assert len(lines) == 2 and "Traceback" not in r.output


def test_sheet_show_prints_the_demo_sheet(var: Path) -> None:
    import shutil

    shutil.copytree(Path(__file__).resolve().parents[1] / "api" / "data" / "demo-sheets", var / "sheets")
    r = runner.invoke(app, ["sheet", "show", "--product", "spot", "--pool", "vcJkd", "--limit", "5"])
    assert r.exit_code == 0, r.output
    assert "price-sheet-000001.json: 28 item(s)" in r.output and "vcJkd" in r.output and "aws p3.2xlarge" in r.output
    r = runner.invoke(app, ["sheet", "show", "7"])
    assert r.exit_code == 1 and "no published sheet v7" in r.output
