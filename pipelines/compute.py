"""The task runner for per-pool and per-origin work, and the hand-off of inputs to its workers.

Workers get paths, not frames or connections: the flow writes the night's inputs once to
`[compute] scratch_dir` (Parquet), every task reads them there (once per worker process), and only
small results travel back. DuckDB stays in the flow's process, the single writer.
"""
from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import pandas as pd
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from pipelines.settings import Settings


def use_dask(settings: Settings, n_pools: int) -> bool:
    c = settings.compute
    return c.runner == "dask" or (c.runner == "auto" and (c.address is not None or n_pools >= c.dask_min_pools))


def task_runner(settings: Settings, n_pools: int) -> TaskRunner:
    """Dask (an existing cluster by address, else a local one) or threads in this process."""
    c = settings.compute
    if not use_dask(settings, n_pools):
        return ThreadPoolTaskRunner(max_workers=1)  # in-process and in order: the reference results
    from prefect_dask import DaskTaskRunner

    if c.address:
        return DaskTaskRunner(address=c.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": c.n_workers, "threads_per_worker": c.threads_per_worker,
                                          "processes": True, "dashboard_address": ":0"})


@contextmanager
def handoff(settings: Settings, **frames: pd.DataFrame) -> Iterator[dict[str, str]]:
    """Write frames where workers can read them; {name: path}; removed afterwards."""
    d = Path(settings.compute.scratch_dir) / uuid.uuid4().hex
    d.mkdir(parents=True, exist_ok=True)
    try:
        paths = {}
        for name, df in frames.items():
            p = d / f"{name}.parquet"
            df.to_parquet(p, index=False)
            paths[name] = str(p.resolve())
        yield paths
    finally:
        shutil.rmtree(d, ignore_errors=True)


@lru_cache(maxsize=4)
def read_handoff(path: str) -> pd.DataFrame:
    """A worker reads each input once, however many of its tasks use it."""
    return pd.read_parquet(path)
