"""A night that fails before it can record itself still shows in `idlecap status`: the real CLI in a
subprocess, once with Prefect's ephemeral server unable to start in time, once with the warehouse
locked by another process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines.settings import Settings
from pipelines.unrecorded_nights import read

REPO = Path(__file__).resolve().parents[2]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "IDLECAP_", "MLFLOW_"))}
    return {**env, "IDLECAP_VAR_DIR": str(tmp / "var"), "PYTHONPATH": str(REPO), **extra}


def _cli(tmp: Path, args: list[str], **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=tmp, env=_env(tmp, **extra),
                          capture_output=True, text=True, timeout=300)


def test_a_prefect_server_that_does_not_start_is_listed_by_status(tmp_path: Path) -> None:
    r = _cli(tmp_path, ["nightly"], PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ephemeral Prefect API server" in r.stdout and "before the night could record itself" in r.stdout
    assert "Traceback" not in r.stdout
    rows = read(Settings(var_dir=tmp_path / "var"))
    assert len(rows) == 1 and rows.iloc[0]["failed_step"] == "Prefect server start"
    s = _cli(tmp_path, ["status"])  # no warehouse yet: the failed night is still shown
    assert "Prefect server start" in s.stdout and "failed" in s.stdout, s.stdout


def test_a_locked_warehouse_is_listed_by_status_once_it_is_free(tmp_path: Path) -> None:
    from tests.warehouse.test_db import hold
    from warehouse.db import connect

    db = tmp_path / "var" / "idlecap.duckdb"
    connect(db).close()
    p = hold(db, 120, purpose="ingest")
    try:
        r = _cli(tmp_path, ["nightly"], IDLECAP_WAREHOUSE__BUSY_WAIT_S="0.5")
    finally:
        p.kill()
        p.wait()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "warehouse busy" in r.stdout and "Traceback" not in r.stdout
    assert " INFO mlflow" not in r.stdout + r.stderr  # the night created the MLflow store: no INFO lines shown
    assert (tmp_path / "var" / "mlflow.db").exists()
    rows = read(Settings(var_dir=tmp_path / "var"))
    assert len(rows) == 1 and rows.iloc[0]["failed_step"] == "warehouse lock"
    s = _cli(tmp_path, ["status"])
    assert s.returncode == 0, s.stdout + s.stderr
    assert "warehouse lock" in s.stdout and "last nightly runs" in s.stdout


def test_a_night_locked_mid_run_is_shown_once_as_failed() -> None:
    """It recorded its start (`running`), then the lock stopped it from closing that row."""
    import pandas as pd

    from pipelines.unrecorded_nights import merge

    t = pd.Timestamp("2026-03-02 02:00", tz="UTC")
    nights = pd.DataFrame({"started_at": [t - pd.Timedelta(days=1), t + pd.Timedelta(seconds=40)],
                           "status": ["published", "running"], "failed_step": [None, None], "reason": [None, None],
                           "finished_at": [t - pd.Timedelta(days=1) + pd.Timedelta(minutes=3), pd.NaT]})
    early = pd.DataFrame({"started_at": [t, t - pd.Timedelta(days=3)], "status": ["failed", "failed"],
                          "failed_step": ["warehouse lock", "Prefect server start"],
                          "reason": ["WarehouseBusy: held by ingest", "TimeoutError"],
                          "finished_at": [t + pd.Timedelta(minutes=2), t - pd.Timedelta(days=3) + pd.Timedelta(minutes=1)]})
    out = merge(nights, early)
    assert len(out) == 3 and (out["status"] == "running").sum() == 0
    row = out[out["started_at"] == t + pd.Timedelta(seconds=40)].iloc[0]
    assert row["status"] == "failed" and row["failed_step"] == "warehouse lock"
    assert "Prefect server start" in set(out["failed_step"])  # an unrelated early failure stays its own row
