"""The night's review charts, drawn after the price step (they need its offers) and logged to MLflow.

- `fan_charts/<pool>.png` on the night's `forecast` run: every pool with an offered item or a
  price move in the sheet live after the night, plus the `[nightly] fan_charts` largest other
  pools with a forecast (context on a night that offered little);
- `nights.png` on the parent run: GPU-hours offered and revenue, the last NIGHTS nights.

The price charts (`charts/spot_<gpu>.png`, `charts/reserved_<gpu>.png`) belong to the price step,
which logs them to its own run. Nothing here may fail a night: the flow turns an exception into
a warning, and a chart that cannot be drawn is a warning, not a missing night.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.forecast_flow import _CALENDAR_SQL, _newest_plan
from pipelines.settings import Settings
from pipelines.warehouse_conn import open_warehouse

NIGHTS = 30          # nights in nights.png
HISTORY_HOURS = 72   # history before the pricing origin in a fan chart
PARALLEL_FROM = 48   # pools from which fan charts are drawn in worker processes


def chart_pools(offers: pd.DataFrame | None, diff: pd.DataFrame | None, capacity: pd.Series,
                forecast_pools: set[str], extra: int) -> dict[str, str]:
    """Pool -> why it gets a fan chart: every pool with an offer or a price move, then the `extra`
    largest other pools that have a forecast. Ordered: offers and moves by name, then by size."""
    why: dict[str, list[str]] = {}
    if offers is not None and len(offers):
        for pool, prods in offers.groupby("pool")["product"]:
            names = sorted({str(p).replace("reserved_", "") for p in prods},
                           key=lambda p: (p != "spot", int("".join(c for c in p if c.isdigit()) or 0)))
            why.setdefault(str(pool), []).append("offers: " + ", ".join(names))
    if diff is not None and len(diff):
        for pool, n in diff.groupby("pool").size().items():
            why.setdefault(str(pool), []).append(f"{n} price move{'s' if n != 1 else ''}")
    out = {p: "; ".join(why[p]) for p in sorted(why)}
    others = [p for p in capacity.sort_values(ascending=False, kind="stable").index
              if p in forecast_pools and p not in out]
    out.update({p: "largest pools, no offer or price move" for p in others[:extra]})
    return out


def draw_fan_charts(series: pd.DataFrame, rows: pd.DataFrame, plan: pd.DataFrame, offers: pd.DataFrame | None,
                    pools: dict[str, str], origin: pd.Timestamp, spot_days: float,
                    processes: int = 1) -> tuple[dict[str, bytes], dict[str, str], float]:
    """PNG per pool (pool -> bytes), failures (pool -> error) and wall seconds per chart.

    Drawing is CPU-bound Python (threads do not help): with `processes` > 1 and at least
    PARALLEL_FROM pools, the charts are drawn in that many worker processes (joblib/loky)."""
    from models.plots import fan_chart_or_error

    start = origin - pd.Timedelta(hours=HISTORY_HOURS + 1)
    hist = {p: g for p, g in series[series["ds"] >= start].groupby("unique_id")}
    fc = {p: g for p, g in rows.groupby("unique_id")}
    pl = {p: g for p, g in plan.groupby("unique_id")} if len(plan) else {}
    off = {p: g for p, g in offers.groupby("pool")} if offers is not None and len(offers) else {}
    empty = pd.DataFrame(columns=["ds", "y"])

    def job(pool: str) -> tuple[tuple, dict[str, Any]]:
        h, f = hist.get(pool, empty), fc.get(pool, pd.DataFrame())
        gpu = h["gpu_model"].dropna().iloc[-1] if "gpu_model" in h and h["gpu_model"].notna().any() else "?"
        cap = h["gpus_total"].dropna().iloc[-1] if "gpus_total" in h and h["gpus_total"].notna().any() else None
        model = f["model"].iloc[0] if "model" in f and len(f) else "no forecast"
        size = f", {cap:g} GPUs" if cap is not None else ""
        title = f"{pool} ({gpu}{size}): idle GPUs, forecast ({model}) and tonight's offers  [{pools[pool]}]"
        return (pool, h, f, pl.get(pool), title, HISTORY_HOURS), {"spot_days": spot_days, "offers": off.get(pool),
                                                                   "origin": origin}

    t = time.perf_counter()
    jobs = [job(p) for p in pools]
    if processes > 1 and len(jobs) >= PARALLEL_FROM:
        from joblib import Parallel, delayed

        done = Parallel(n_jobs=processes, batch_size=8)(delayed(fan_chart_or_error)(*a, **k) for a, k in jobs)
    else:
        done = [fan_chart_or_error(*a, **k) for a, k in jobs]
    per = (time.perf_counter() - t) / max(len(pools), 1)
    return {p: png for p, png, _ in done if png is not None}, {p: e for p, _, e in done if e}, per


def _night_offers(settings: Settings, result: dict[str, Any]) -> tuple[pd.DataFrame | None, pd.Timestamp | None]:
    """Offered items of the sheet live after the night, and its pricing origin (valid_from).

    A published night has them in the result; a night that kept its sheet reads that sheet."""
    items = result.get("items")
    if isinstance(items, pd.DataFrame) and len(items):
        origin = pd.Timestamp(result["valid_from"]) if result.get("valid_from") else None
        return items[items["offered"].astype(bool)], origin
    if result.get("version") is None:
        return None, None
    from warehouse.sheets import sheet_items

    con = open_warehouse(settings, "nightly", read_only=True)
    try:
        items = sheet_items(con, int(result["version"]))
        vf = con.execute("SELECT valid_from FROM price_sheets WHERE version = ?", [int(result["version"])]).fetchone()
    finally:
        con.close()
    return items, (pd.Timestamp(vf[0]) if vf else None)


def _forecast_run(client, parent_run_id: str) -> str:
    """The night's `forecast` run (fan charts go beside its forecast id), else the parent."""
    exp = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.kind = 'forecast'",
                              max_results=1)
    return runs[0].info.run_id if runs else parent_run_id


def log_review_charts(client, parent_run_id: str, settings: Settings, series: pd.DataFrame, night: dict[str, Any],
                      result: dict[str, Any], processes: int | None = None) -> list[str]:
    """Draw and log the night's fan charts and nights.png; returns warnings (charts that failed).
    `processes` for the fan charts: by default every core, at most 8."""
    from pricing.plots import nights_chart
    from warehouse.nightly import night_offers

    warnings: list[str] = []
    offers, origin = _night_offers(settings, result)
    spot_days = settings.pricing.spot_days
    con = open_warehouse(settings, "nightly", read_only=True)
    try:
        fid = night.get("forecast_id")
        rows = con.execute("SELECT * FROM forecasts WHERE forecast_id = ? AND grain = 'hour'", [fid]).df() \
            if fid else pd.DataFrame(columns=["unique_id", "ds"])
        plan = _newest_plan(con.execute(_CALENDAR_SQL).df())
        nights = night_offers(con, NIGHTS)
    finally:
        con.close()
    if origin is None and len(rows):
        origin = pd.Timestamp(rows["ds"].min())
    capacity = series.groupby("unique_id")["gpus_total"].last()
    pools = chart_pools(offers, result.get("diff"), capacity, set(rows["unique_id"]), settings.nightly.fan_charts)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        if pools and origin is not None:
            end = origin + pd.Timedelta(days=spot_days + 2)
            rows = rows[rows["unique_id"].isin(list(pools)) & (rows["ds"] <= end)]
            pngs, failed, per = draw_fan_charts(series[series["unique_id"].isin(list(pools))], rows, plan, offers, pools,
                                                origin, spot_days, processes or min(os.cpu_count() or 1, 8))
            warnings += [f"fan chart {p}: {e}" for p, e in sorted(failed.items())]
            fans = t / "fan_charts"
            fans.mkdir()
            for pool, png in pngs.items():
                (fans / f"{pool}.png".replace("/", "_")).write_bytes(png)
            run = _forecast_run(client, parent_run_id)
            if pngs:
                client.log_artifacts(run, str(fans), "fan_charts")
            client.log_metric(run, "fan_charts", float(len(pngs)))
            client.log_metric(run, "fan_chart_seconds_each", round(per, 4))
        (t / "nights.png").write_bytes(nights_chart(nights))
        client.log_artifact(parent_run_id, str(t / "nights.png"))
    return warnings
