"""The nightly on a real Dask cluster (2 worker processes) gives the same sheet as in-process threads."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.compute import task_runner, use_dask
from pipelines.settings import ComputeSettings, ForecastSettings, NightlySettings, PricingSettings, Settings
from pricing.sheet import latest_sheet_path, read_sheet

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "helios_earth_sample.parquet"
pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        with Client(c) as client:
            yield c, client


def _settings(var: Path, compute: ComputeSettings) -> Settings:
    s = Settings(
        var_dir=var,
        compute=compute,
        forecast=ForecastSettings(models=["naive", "snaive_24", "lgbm"], backtest_windows=2, fan_charts=0,
                                  lgbm_n_estimators=30, experiment=f"t-c-fc-{var.name}",
                                  registered_model=f"t-c-fc-{var.name}"),
        pricing=PricingSettings(experiment=f"t-c-price-{var.name}"),
        nightly=NightlySettings(inbox=[str(SAMPLE)], replay=True, experiment=f"t-c-nightly-{var.name}", fan_charts=0),
    )
    s.ensure_dirs()
    return s


def _items(s: Settings) -> list[dict]:
    sheet = read_sheet(latest_sheet_path(s.sheets_dir))
    keep = ("pool", "product", "start", "end", "price_per_gpu_hour", "gpus_offered", "interruption_risk",
            "discount_vs_reference", "floor", "guardrails")
    return sorted(({k: it.get(k) for k in keep} for it in sheet["items"]), key=lambda d: (d["pool"], d["product"], d["start"]))


def test_a_night_on_a_dask_cluster_publishes_the_same_sheet_as_in_process(cluster, tmp_path: Path) -> None:
    from pipelines.nightly_flow import nightly

    c, client = cluster
    local = _settings(tmp_path / "threads", ComputeSettings(runner="threads"))
    dask = _settings(tmp_path / "dask", ComputeSettings(runner="dask", address=c.scheduler_address))
    assert nightly(settings=local)["status"] == "published"
    assert nightly(settings=dask)["status"] == "published"
    a, b = _items(local), _items(dask)
    assert len(a) > 20 and a == b
    # the backtest windows really ran on both worker processes (each read the handed-off inputs)
    reads = client.run(lambda: __import__("pipelines.compute", fromlist=["x"]).read_handoff.cache_info().misses)
    assert len(reads) == 2 and all(n > 0 for n in reads.values()), reads
    assert not any(Path(dask.compute.scratch_dir).iterdir())  # the hand-off is cleaned up


def test_auto_uses_dask_for_wide_fleets_or_a_given_cluster() -> None:
    s = Settings()
    assert not use_dask(s, 16) and use_dask(s, 100)
    assert use_dask(Settings(compute=ComputeSettings(address="tcp://10.0.0.5:8786")), 3)
    assert not use_dask(Settings(compute=ComputeSettings(runner="threads")), 10_000)
    assert type(task_runner(Settings(compute=ComputeSettings(runner="dask")), 1)).__name__ == "DaskTaskRunner"
