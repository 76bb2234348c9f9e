"""Whole nights (`idlecap nightly --replay`) on a synthetic fleet: in-process vs a local Dask cluster.

The fleet is generated once (`idlecap generate --file-per day`); each runner then gets a fresh
var dir and three nights, each its own `idlecap` process: the first night (backfill of `--days`
days: ingest, refresh, train with the default candidates and 7 backtest origins, forecast,
price), a steady night (one more day, `--retrain never`) and a retraining night (one more day,
`--retrain always`). Printed: wall time, CPU seconds of the process and every child (Dask
workers, the Prefect server), the largest child's peak RSS, and each step's wall time from the
night's MLflow runs. The ratio of first-night wall times is the speed-up of Dask here.

Run: `.venv/bin/python bench/fleet_night.py [--pools 100 --nodes-per-pool 5 --days 15 --runners threads dask]`
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IDLECAP = str(Path(sys.executable).with_name("idlecap"))


WRAP = """
import json, resource, subprocess, sys
p = subprocess.run(sys.argv[1:])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("RUSAGE " + json.dumps({"rc": p.returncode, "cpu": r.ru_utime + r.ru_stime, "peak_mib": r.ru_maxrss / 1024}))
"""


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float, str]:
    """Wall s, CPU s of the command and its children, the largest process's peak RSS (MiB), stdout."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", WRAP, *cmd], env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    usage = json.loads(p.stdout.strip().splitlines()[-1].split(" ", 1)[1])
    if usage["rc"]:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return wall, usage["cpu"], usage["peak_mib"], p.stdout


def steps(var: Path, newest: bool = False) -> str:
    """Wall seconds of a night's nested MLflow runs (ingest, train, forecast, price); the newest night's
    when `newest`, else the first night's."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{var / 'mlflow.db'}")
    runs = [r for exp in client.search_experiments() for r in client.search_runs([exp.experiment_id])]
    parents = sorted((r for r in runs if r.data.tags.get("kind") == "nightly"), key=lambda r: r.info.start_time)
    if not parents:
        return "-"
    parent = parents[-1 if newest else 0]
    t0 = parent.info.start_time
    out = sorted((r.info.start_time, r.info.run_name.split()[0], r.info.end_time) for r in runs
                 if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id and r.info.end_time)
    # a step's MLflow run opens when its work is done (train: after the backtest and fit), so each
    # step is timed from the end of the one before
    marks, prev = [], t0
    for _, name, end in out:
        marks.append(f"{name} {(end - prev) / 1000:.0f} s")
        prev = end
    marks.append(f"after price {(parent.info.end_time - prev) / 1000:.0f} s" if parent.info.end_time else "")
    return ", ".join(m for m in marks if m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pools", type=int, default=100)
    ap.add_argument("--nodes-per-pool", type=int, default=5)
    ap.add_argument("--days", type=int, default=15)
    ap.add_argument("--interval-s", type=int, default=60)
    ap.add_argument("--runners", nargs="+", default=["threads", "dask"])
    ap.add_argument("--no-retraining-night", action="store_true", help="only the first and steady nights")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="idlecap-night-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "IDLECAP_VAR_DIR": str(tmp / "gen-var")}
        wall, _, _, _ = run([IDLECAP, "generate", str(tmp / "fleet"), "--pools", str(a.pools), "--nodes-per-pool",
                             str(a.nodes_per_pool), "--days", str(a.days + 2), "--interval-s", str(a.interval_s),
                             "--file-per", "day"], env, tmp)
        days = sorted(str(p) for p in (tmp / "fleet" / "telemetry").rglob("*.parquet"))
        first, steady, retrain = days[:-2], days[-2:-1], days[-1:]  # then one day a night
        rows = a.pools * a.nodes_per_pool * a.days * 86400 // a.interval_s
        print(f"fleet: {a.pools} pools, {a.pools * a.nodes_per_pool} nodes, {a.days} days at {a.interval_s} s "
              f"(~{rows / 1e6:.1f} M rows), generated in {wall:.0f} s", flush=True)
        results = {}
        for runner in a.runners:
            var = tmp / f"var-{runner}"
            env = {**os.environ, "IDLECAP_VAR_DIR": str(var), "IDLECAP_COMPUTE__RUNNER": runner}
            cal = str(tmp / "fleet" / "calendar.csv")
            wall, cpu, peak, out = run([IDLECAP, "nightly", "--replay", "--calendar", cal, *first], env, tmp)
            results[runner] = wall
            print(f"  {f'first night ({a.days} d)':<22} {runner:<8} wall {wall:6.0f} s  CPU {cpu:6.0f} s  "
                  f"peak {peak:6.0f} MiB  steps: {steps(var)}", flush=True)
            later = [("steady night (1 d)", "never", steady), ("retraining night (1 d)", "always", retrain)]
            for label, mode, files in later[: 1 if a.no_retraining_night else 2]:
                wall, cpu, peak, out = run([IDLECAP, "nightly", "--replay", "--retrain", mode, "--calendar", cal, *files],
                                           env, tmp)
                print(f"  {label:<22} {runner:<8} wall {wall:6.0f} s  CPU {cpu:6.0f} s  "
                      f"peak {peak:6.0f} MiB  steps: {steps(var, newest=True)}", flush=True)
        if "threads" in results and "dask" in results:
            print(f"  dask / threads wall time: x{results['dask'] / results['threads']:.2f}")


if __name__ == "__main__":
    main()
