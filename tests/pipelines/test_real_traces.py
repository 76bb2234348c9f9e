"""Bring your own fleet: one night on each real public trace that is not the bundled sample
(real Prefect engine, MLflow sqlite store, DuckDB file). GPU names resolve through the catalogue;
what cannot be sold says why per pool, and a first night with nothing to sell is a failure with
a reason per cause. Needs ../shared/data/real beside the clone (development checkouts)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from pipelines.settings import ForecastSettings, NightlySettings, PricingSettings, Settings
from pricing.sheet import latest_sheet_path, read_sheet
from warehouse.db import connect

REPO = Path(__file__).resolve().parents[2]
REAL = REPO.parent / "shared" / "data" / "real"
SPOT = REAL / "alibaba_spot_gpu" / "hourly_concurrency_top_models.csv"
PHILLY = REAL / "philly" / "philly_node_sequence.csv.gz"
GENAI = REAL / "alibaba_genai" / "pod_gpu_duty_cycle_anon.csv.gz"
pytestmark = [
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.skipif(not REAL.is_dir(), reason="real traces need ../shared/data/real beside the clone "
                                                   "(development checkouts only)"),
]


def _settings(tmp: Path, name: str, aliases: dict[str, str] | None = None) -> Settings:
    s = Settings(
        var_dir=tmp / "var",
        forecast=ForecastSettings(models=["naive", "snaive_24"], backtest_windows=1, fan_charts=0,
                                  experiment=f"t-{name}-fc", registered_model=f"t-{name}-fc"),
        pricing=PricingSettings(experiment=f"t-{name}-price", gpu_aliases=aliases or {}),
        nightly=NightlySettings(replay=True, experiment=f"t-{name}-night", fan_charts=0),
    )
    s.ensure_dirs()
    return s


def _findings(s: Settings) -> pd.DataFrame:
    from warehouse.sheets import latest_findings

    con = connect(s.duckdb_path, read_only=True)
    try:
        return latest_findings(con)
    finally:
        con.close()


def _last_night(s: Settings) -> dict:
    from warehouse.nightly import last_nights

    con = connect(s.duckdb_path, read_only=True)
    try:
        return last_nights(con, 1).iloc[0].to_dict()
    finally:
        con.close()


@pytest.fixture(scope="module")
def spot_night(tmp_path_factory):
    from pipelines.nightly_flow import nightly

    s = _settings(tmp_path_factory.mktemp("spot"), "spot")
    s = s.model_copy(update={"nightly": s.nightly.model_copy(update={"source": "alibaba-spot"})})
    return s, nightly(settings=s, paths=[str(SPOT)])


def test_alibaba_spot_publishes_real_gpu_names_priced_through_the_catalogue(spot_night) -> None:
    s, out = spot_night
    assert out["status"] == "published", out["price"].get("reason")
    sheet = read_sheet(latest_sheet_path(s.sheets_dir))
    by_pool = pd.DataFrame(sheet["items"]).groupby("pool").first()
    for pool, cls in (("alibaba-spot-A100-SXM4-80GB", "A100-80GB"), ("alibaba-spot-A800-SXM4-80GB", "A800-80GB")):
        assert pool in by_pool.index, f"{pool} has no item"
        assert by_pool.loc[pool, "gpu_class"] == cls  # the sheet shows the name as it arrived and its class
    a800 = by_pool.loc["alibaba-spot-A800-SXM4-80GB"]
    assert a800["gpu_model"] == "A800-SXM4-80GB"
    assert a800["reference"]["gpu_model"] == "A100-80GB" and a800["reference"]["performance_factor"] == 0.95
    f = _findings(s)
    causes = {(r.pool, r.cause, r.product if isinstance(r.product, str) else None) for r in f.itertuples()}
    for anon in ("GPU-series-1", "GPU-series-2"):  # the anonymised series: named, with how to map them
        row = f[(f["pool"] == f"alibaba-spot-{anon}")].iloc[0]
        assert row["cause"] == "unknown_gpu" and f'"{anon}" = "<class>"' in row["action"]
    assert ("alibaba-spot-H800", "not_competitive", "spot") in causes  # its cost is above AWS H100 spot x 0.90
    h800 = f[(f["pool"] == "alibaba-spot-H800") & (f["cause"] == "not_competitive")].iloc[0]
    assert "floor $1.07/GPU-h" in h800["detail"] and "x 0.90 (H800 vs H100)" in h800["detail"]
    a10 = f[f["pool"] == "alibaba-spot-A10"]  # priced (competitive at cost), but never idle in this trace
    assert set(a10["cause"]) == {"no_capacity"} and a10["gpu_class"].iloc[0] == "A10"
    assert "forecast idle 0.0 of 2,494" in " ".join(a10["detail"])
    # the night's review says the same, and warns that the references are old
    c = mlflow.MlflowClient(s.mlflow_tracking_uri)
    summary = Path(c.download_artifacts(out["mlflow_run_id"], "summary.md")).read_text()
    assert "What stops a sale" in summary and "GPU-series-1" in summary and "not competitive at cost" in summary
    assert any("reference prices are" in w for w in out["warnings"])


def test_mapping_the_anonymised_names_sells_them(spot_night) -> None:
    from pipelines.pricing_flow import price

    s, out = spot_night
    mapped = s.model_copy(update={"pricing": s.pricing.model_copy(
        update={"gpu_aliases": {"GPU-series-1": "A100-40GB", "GPU-series-2": "L40S"}})})
    as_of = pd.Timestamp(read_sheet(latest_sheet_path(s.sheets_dir))["data_through"]) + pd.Timedelta(hours=1)
    res = price(settings=mapped, as_of=as_of.to_pydatetime())
    assert res["status"] == "published"
    pools = {i["pool"]: i["gpu_class"] for i in read_sheet(latest_sheet_path(s.sheets_dir))["items"]}
    assert pools.get("alibaba-spot-GPU-series-1") == "A100-40GB" and pools.get("alibaba-spot-GPU-series-2") == "L40S"


def test_philly_first_night_fails_with_the_reason_then_an_alias_publishes(tmp_path: Path) -> None:
    from pipelines.nightly_flow import nightly
    from pipelines.pricing_flow import NothingToSell

    s = _settings(tmp_path, "philly")
    s = s.model_copy(update={"nightly": s.nightly.model_copy(update={"source": "philly"})})
    with pytest.raises(NothingToSell) as e:
        nightly(settings=s, paths=[str(PHILLY)])
    msg = str(e.value)
    assert msg.startswith("nothing to sell, so no sheet was published")
    assert "philly: GPU name 'philly-mixed' is not in the GPU catalogue" in msg and "[pricing.gpu_aliases]" in msg
    n = _last_night(s)
    assert n["status"] == "failed" and n["failed_step"] == "price" and "philly-mixed" in n["reason"]
    assert latest_sheet_path(s.sheets_dir) is None
    # Philly's 12 GB / 24 GB Pascal-era GPUs: the operator maps the name, the next night sells
    s2 = s.model_copy(update={"pricing": s.pricing.model_copy(update={"gpu_aliases": {"philly-mixed": "P100"}})})
    out = nightly(settings=s2, paths=[str(PHILLY)])
    assert out["status"] == "published"
    items = read_sheet(latest_sheet_path(s.sheets_dir))["items"]
    assert {i["gpu_class"] for i in items} == {"P100"}
    assert {i["reference"]["performance_factor"] for i in items} == {0.5}
    assert all(i["reference"]["gpu_model"] in ("V100", "V100-32GB") for i in items)


def test_alibaba_genai_fails_at_training_with_what_to_do(tmp_path: Path) -> None:
    from pipelines.cli import _pricing_findings
    from pipelines.nightly_flow import nightly

    s = _settings(tmp_path, "genai")
    s = s.model_copy(update={"nightly": s.nightly.model_copy(update={"source": "alibaba-genai"})})
    with pytest.raises(ValueError, match="not enough history to backtest: 1[0-9] h of telemetry"):
        nightly(settings=s, paths=[str(GENAI)])
    n = _last_night(s)
    assert n["failed_step"] == "train" and "backtest_windows" in n["reason"]
    con = connect(s.duckdb_path, read_only=True)
    try:
        f = _pricing_findings(con, s)  # what `idlecap status` shows before any pricing pass
    finally:
        con.close()
    row = f[f["pool"] == "alibaba-genai"].iloc[0]
    assert row["cause"] == "unknown_gpu" and '"alibaba-genai-gpu" = "<class>"' in row["fix"]


def test_a_failed_night_prints_the_cause_in_a_few_lines(tmp_path: Path) -> None:
    """The wrong --source: the CLI says which file failed and why, where the trace is, and exits 1,
    without Prefect's traceback or DuckDB's leak report at exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDLECAP_")}
    env.update(IDLECAP_VAR_DIR=str(tmp_path / "var"), PREFECT_HOME=str(tmp_path / "prefect"), COLUMNS="200")
    env.pop("PREFECT_API_URL", None)
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "nightly", str(SPOT), "--source", "helios", "--replay"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "the night failed at ingest: no telemetry could be ingested: 1 file(s) failed as --source 'helios'" in out
    assert "hourly_concurrency_top_models.csv:" in out and "--verbose" in out and "traceback.txt" in out
    assert "Traceback" not in out and "leaked" not in out, out
    lines = [x for x in out.splitlines() if x.strip() and "mlflow.store.db.utils" not in x and "━" not in x]
    assert len(lines) <= 12, out
    v = subprocess.run([sys.executable, "-m", "pipelines.cli", "nightly", "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert "[nightly] inbox" in v.stdout and "canonical unless configured" in v.stdout
