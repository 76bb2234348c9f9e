"""Shared fixtures. All state (DuckDB, Prefect home, MLflow, config) lives in temp dirs.

The environment is set at import, before anything imports prefect or mlflow (STACK.md).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

_STATE = Path(tempfile.mkdtemp(prefix="idlecap-tests-"))
for _k, _v in {
    "PREFECT_HOME": str(_STATE / "prefect"),
    "XDG_CONFIG_HOME": str(_STATE / "xdg"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "MLFLOW_TRACKING_URI": f"sqlite:///{_STATE / 'mlflow.db'}",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}.items():
    os.environ[_k] = _v
os.environ.pop("PREFECT_API_URL", None)
for _k in [k for k in os.environ if k.startswith("IDLECAP_")]:
    os.environ.pop(_k)

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "helios_earth_sample.parquet"


@pytest.fixture(scope="session")
def prefect_harness():
    """One real (temporary) Prefect server for the whole session; 12-14 s to start here."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "idlecap.duckdb"


@pytest.fixture
def con(db_path: Path):
    from warehouse.db import connect

    c = connect(db_path)
    yield c
    c.close()


def fleet_frames(pools: int = 6, days: int = 35, seed: int = 0, plan_lead_days: tuple[int, int] = (1, 10)):
    """A synthetic fleet where planned runs drive idle capacity: (series frame, calendar)."""
    from warehouse.synthetic import FleetSpec, generate_calendar, generate_pool_busy

    spec = FleetSpec(pools=pools, days=days, seed=seed, plan_horizon_days=14, plan_lead_days=plan_lead_days)
    cal = generate_calendar(spec)
    truth = generate_pool_busy(spec, cal)
    df = truth.assign(y=(truth["gpus_total"] - truth["busy_gpus"]).astype(float))
    df["gpu_model"] = df["unique_id"].str.split("-").str[-1].str.upper()
    return df[["unique_id", "ds", "y", "gpus_total", "gpu_model"]], cal


@pytest.fixture(scope="session")
def fleet():
    return fleet_frames()


def load_fleet(settings, files) -> None:
    """Telemetry + calendar of a written synthetic fleet into the settings' warehouse, pool_hourly refreshed."""
    from warehouse import pool_hourly
    from warehouse.calendar import ingest_calendar
    from warehouse.db import connect
    from warehouse.ingest import ingest_files

    settings.ensure_dirs()
    con = connect(settings.duckdb_path)
    try:
        ingest_files(con, files.telemetry)
        ingest_calendar(con, files.calendar)
        pool_hourly.refresh(con)
    finally:
        con.close()


@pytest.fixture(scope="session")
def fleet_with_plan():
    """A fleet whose planned runs are known 8-14 days ahead, y_min = y (hourly truth)."""
    df, cal = fleet_frames(pools=4, days=28, seed=3, plan_lead_days=(8, 14))
    return df.assign(y_min=df["y"]), cal


def assert_readable_png(png: bytes, min_bytes: int = 20_000, min_width: int = 1000, min_height: int = 400) -> None:
    """A chart a reviewer can open: decodes as PNG, at least the size asked, and not blank (real
    contrast and many distinct colours)."""
    import io

    import matplotlib.image as mpimg
    import numpy as np

    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > min_bytes
    px = mpimg.imread(io.BytesIO(png), format="png")
    assert px.shape[0] >= min_height and px.shape[1] >= min_width
    rgb = px[..., :3]
    assert rgb.std() > 0.05
    assert len(np.unique(rgb.reshape(-1, 3).round(2), axis=0)) > 50


@pytest.fixture
def readable_png():
    """assert_readable_png, for the chart tests."""
    return assert_readable_png
