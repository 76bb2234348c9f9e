"""Helpers for the leasing API tests: real published sheets on disk and a real uvicorn process.

Not a conftest.py: other test packages import the root conftest by module name, and a second
`conftest` module here would shadow it. Tests import the `api_server` fixture from here.

The server is `python -m pipelines.cli serve` in a subprocess on 127.0.0.1 (what users run),
pointed at a temp var dir through IDLECAP_* variables.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import numpy as np
import pandas as pd

from api.keys import create_key
from pricing.sheet import PriceSheet, public_items, publish

REPO = Path(__file__).resolve().parents[2]
POOLS = {"p1": "V100", "p2": "V100", "p3": "V100", "p4": "H100"}


def engine_items(valid_from: pd.Timestamp, seed: int = 0, gpus: dict[str, int] | None = None) -> pd.DataFrame:
    """Offered items shaped like pricing.engine's output: 6-hour spot blocks for 2 days, 1d and 7d reserved."""
    rng = np.random.default_rng(seed)
    gpus = gpus or {"p1": 8, "p2": 4, "p3": 16, "p4": 6}
    rows = []
    for pool, model in POOLS.items():
        ref = 3.06 if model == "V100" else 6.88
        for k in range(8):
            start = valid_from + pd.Timedelta(hours=6 * k)
            rows.append(dict(pool=pool, gpu_model=model, product="spot", start=start, hours=6,
                             price_per_gpu_hour=round(ref * rng.uniform(0.3, 0.6), 4), gpus_offered=gpus[pool],
                             interruption_risk=round(rng.uniform(0.05, 0.5), 3), reference_product="spot",
                             reference_price=ref * 0.7))
        day = valid_from.ceil("D")
        for prod, hours in (("reserved_1d", 24), ("reserved_7d", 168)):
            rows.append(dict(pool=pool, gpu_model=model, product=prod, start=day, hours=hours,
                             price_per_gpu_hour=round(ref * rng.uniform(0.5, 0.8), 4), gpus_offered=max(1, gpus[pool] // 2),
                             interruption_risk=0.0, reference_product="on_demand", reference_price=ref))
    df = pd.DataFrame(rows)
    df["region"] = np.where(df["pool"] == "p3", "dc2", "dc1")
    df["end"] = df["start"] + pd.to_timedelta(df["hours"], unit="h")
    df["reference_provider"], df["reference_region"], df["reference_sku"] = "aws", "us-east-1", "p3.2xlarge"
    df["reference_as_of"] = pd.Timestamp("2025-11-30")
    df["discount_vs_reference"] = 1 - df["price_per_gpu_hour"] / df["reference_price"]
    df["floor"] = 0.4
    df["guardrails"] = [[] for _ in range(len(df))]
    df["gpu_class"] = df["gpu_model"]  # the catalogue class (here every name is its own class)
    return df


def forecast_frame(valid_from: pd.Timestamp, hours: int = 48) -> pd.DataFrame:
    rows = []
    for pool in POOLS:
        for h in range(hours):
            m = 5.0 + np.sin(h / 4)
            rows.append(dict(unique_id=pool, ds=valid_from + pd.Timedelta(hours=h), model="lgbm", mean=m,
                             q05=m - 3, q10=m - 2, q25=m - 1, q50=m, q75=m + 1, q90=m + 2, q95=m + 3, gpus_total=16.0,
                             origin=valid_from))
    return pd.DataFrame(rows)


def make_sheet(version: int, valid_from: pd.Timestamp, valid_hours: int = 24, seed: int | None = None,
               gpus: dict[str, int] | None = None) -> PriceSheet:
    return PriceSheet(
        version=version, generated_at=pd.Timestamp.now(tz="UTC").floor("s"), valid_from=valid_from,
        valid_until=valid_from + pd.Timedelta(hours=valid_hours), data_through=valid_from - pd.Timedelta(hours=1),
        mlflow_run_id=f"run{version}", forecast_id=f"fc-{version}",
        items=public_items(engine_items(valid_from, seed if seed is not None else version, gpus)),
    )


def publish_sheet(sheets_dir: Path, version: int, valid_from: pd.Timestamp | None = None, **kw) -> PriceSheet:
    vf = valid_from if valid_from is not None else pd.Timestamp.now(tz="UTC").floor("h")
    sheet = make_sheet(version, vf, **kw)
    publish(sheet, sheets_dir, forecast=forecast_frame(vf))
    return sheet


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    var: Path
    proc: subprocess.Popen
    log: Path
    customer: str
    internal: str

    @property
    def sheets(self) -> Path:
        return self.var / "sheets"

    def client(self, key: str | None = "customer") -> httpx.Client:
        headers = {} if key is None else {"Authorization": f"Bearer {getattr(self, key, key)}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def access_log(self) -> str:
        return self.log.read_text()


def start_server(var: Path, reload_seconds: float = 0.2, extra_env: dict[str, str] | None = None,
                 root_path: str | None = None) -> Server:
    """`idlecap serve`, or with `root_path` plain uvicorn on the same factory (as behind a path-prefix proxy)."""
    var.mkdir(parents=True, exist_ok=True)
    keys = var / "api_keys.json"
    customer, _ = create_key(keys, "customer", "test customer")
    internal, _ = create_key(keys, "internal", "test analyst")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDLECAP_")}
    env.update({"IDLECAP_VAR_DIR": str(var), "IDLECAP_API__RELOAD_SECONDS": str(reload_seconds), **(extra_env or {})})
    log = var / "api.log"
    fh = log.open("w")
    argv = ["-m", "pipelines.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if root_path:
        argv = ["-m", "uvicorn", "pipelines.serve:app", "--factory", "--host", "127.0.0.1", "--port", str(port),
                "--root-path", root_path]
    proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, var, proc, log, customer, internal)
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"API did not answer /healthz within 60 s:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    """One server per test module over a sheets dir holding v1 (older) and v2 (current)."""
    var = tmp_path_factory.mktemp("api")
    now = pd.Timestamp.now(tz="UTC").floor("h")
    publish_sheet(var / "sheets", 1, now - pd.Timedelta(hours=24), valid_hours=24)
    publish_sheet(var / "sheets", 2, now)
    server = start_server(var)
    yield server
    stop_server(server)
