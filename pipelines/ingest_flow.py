"""Prefect flows that bring telemetry and the training calendar into the warehouse.

Runbook, top to bottom: find the files -> ingest them in batches (one DuckDB transaction per
file, bad rows quarantined, repeated files skipped) -> refresh pool_hourly for the hours that
changed. Every step is a plain function in warehouse/; this file only wires them.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from pipelines.progress import report
from pipelines.settings import Settings
from pipelines.warehouse_conn import open_warehouse
from warehouse import calendar as cal
from warehouse import pool_hourly
from warehouse.ingest import IngestRules, expand_paths, ingest_files


def _rules(settings: Settings) -> IngestRules:
    s = settings.ingest
    return IngestRules(
        future_tolerance_s=s.future_tolerance_s,
        oldest_ts=s.oldest_ts,
        register_new_nodes=s.register_new_nodes,
        register_new_pools=s.register_new_pools,
    )


@task(retries=2, retry_delay_seconds=[1, 5])
def discover_files(paths: list[str]) -> list[str]:
    """Expand directories and globs; retried because network file systems blink."""
    return [str(p) for p in expand_paths(paths)]


@task
def ingest_batch(files: list[str], source: str, force: bool, settings: Settings) -> list[dict[str, Any]]:
    """Ingest a batch of files, one transaction each; a bad file is logged and skipped."""
    con = open_warehouse(settings, "ingest")
    try:
        results = ingest_files(
            con, files, source=source, options=settings.sources.options(), rules=_rules(settings), force=force,
            on_file=lambda r: report("file", r),
        )
    finally:
        con.close()
    return [asdict(r) for r in results]


@task
def refresh_pool_hourly(settings: Settings) -> dict[str, int]:
    con = open_warehouse(settings, "ingest")
    try:
        return asdict(pool_hourly.refresh(con, settings.ingest.idle_util_threshold, settings.warehouse.refresh_slice_hours,
                                         on_slice=lambda done, total: report("refresh", (done, total))))
    finally:
        con.close()


@flow(name="ingest_telemetry", log_prints=True)
def ingest_telemetry(
    paths: list[str], source: str = "canonical", force: bool = False, settings: Settings | None = None
) -> dict[str, Any]:
    """Ingest telemetry files (paths, directories or globs) of one source, then refresh pool_hourly."""
    settings = settings or Settings()
    logger = get_run_logger()
    files = discover_files(paths)
    report("files", len(files))
    results: list[dict[str, Any]] = []
    step = settings.ingest.files_per_task
    for i in range(0, len(files), step):
        results.extend(ingest_batch(files[i : i + step], source, force, settings))
    refreshed = refresh_pool_hourly(settings)
    totals = {k: sum(r[k] for r in results) for k in
              ("rows_in", "rows_loaded", "rows_quarantined", "rows_duplicate", "rows_replaced")}
    by_status: dict[str, int] = {}
    for r in results:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    logger.info("ingested %d file(s) %s: %s; pool_hourly %s", len(files), by_status, totals, refreshed)
    return {"files": results, "totals": totals, "by_status": by_status, "pool_hourly": refreshed}


@task
def ingest_plan_file(path: str, force: bool, settings: Settings) -> dict[str, Any]:
    con = open_warehouse(settings, "ingest")
    try:
        r = cal.ingest_calendar(con, path, force=force)
    finally:
        con.close()
    report("file", r)
    return asdict(r)


@flow(name="ingest_calendar", log_prints=True)
def ingest_calendar(paths: list[str], force: bool = False, settings: Settings | None = None) -> dict[str, Any]:
    """Load training-cycle plan files (new known_at versions are appended, never overwritten)."""
    settings = settings or Settings()
    files = [str(p) for p in expand_paths(paths)] if any(Path(p).is_dir() for p in paths) else list(paths)
    report("files", len(files))
    results = [ingest_plan_file(f, force, settings) for f in files]
    return {"files": results}
