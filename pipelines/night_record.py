"""What a night's MLflow parent run carries, so the runs table compares nights without opening one.

Description: the summary's headline. Metrics: the pricing pass's (`items.offered.spot`,
`gpu_hours.offered.reserved_7d`, `revenue.expected`, `guardrail.ceiling`, `pools.held`, ...),
ingest counts, and last week's live check (`live.*`: forecast MAE against persistence and
seasonal naive, spot interruptions published vs realized, reserved promises kept). Params: the
settings that shaped the night.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.settings import Settings

WEEK = pd.Timedelta(days=7)


def live_week(settings: Settings, data_through: pd.Timestamp) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """Last week's `live.*` metrics, with the judged spot blocks and reserved leases."""
    from pipelines.warehouse_conn import open_warehouse
    from pricing.live_review import outcomes, week_metrics
    from warehouse.nightly import live_errors
    from warehouse.sheets import actual_minima, items_live_between

    until = pd.Timestamp(data_through) + pd.Timedelta(hours=1)
    since = until - WEEK
    f = settings.forecast
    con = open_warehouse(settings, "nightly", read_only=True)
    try:
        # sheets valid up to 30 days back can hold leases that ended this week
        items = items_live_between(con, (since - pd.Timedelta(days=31)).to_pydatetime(), until.to_pydatetime())
        actual = actual_minima(con, (since - pd.Timedelta(days=31)).to_pydatetime(), until.to_pydatetime(),
                               f.min_coverage)
        errors = live_errors(con, since.to_pydatetime(), until.to_pydatetime(), 24, f.min_coverage)
    finally:
        con.close()
    spot, res = outcomes(items, actual, until)
    spot = spot[spot["end"] > since] if len(spot) else spot
    res = res[res["end"] > since] if len(res) else res
    return week_metrics(spot, res, errors), spot, res


def kept_sheet_metrics(settings: Settings, version: int | None) -> dict[str, float]:
    """The offer metrics of the sheet a night kept (held, or nothing new to price), so the runs
    table has a value for every night: what was on sale after it."""
    if version is None:
        return {}
    from pipelines.warehouse_conn import open_warehouse
    from pricing.review import offer_metrics
    from warehouse.sheets import sheet_items

    con = open_warehouse(settings, "nightly", read_only=True)
    try:
        items = sheet_items(con, int(version))
    finally:
        con.close()
    if not len(items):
        return {}
    m = offer_metrics(items, 0, None, {}, 0, settings.pricing.term_discount)
    return {k: v for k, v in m.items() if k.split(".", 1)[0] in ("items", "gpu_hours", "revenue", "discount", "pools")
            and k != "pools.held"}


def night_params(settings: Settings, retrain: str) -> dict[str, str]:
    """The settings that shaped the night's prices and forecast (short values, for comparing runs)."""
    p, f = settings.pricing, settings.forecast
    ov = p.overrides
    ov_text = Path(ov).read_bytes() if ov is not None and Path(ov).exists() else b""
    out: dict[str, Any] = {
        "retrain": retrain, "forecast.models": ",".join(f.models),
        "forecast.horizon_hours": f.horizon_hours,
        "pricing.reserved_break_target": p.reserved_break_target, "pricing.max_daily_change": p.max_daily_change,
        "pricing.min_undercut": p.min_undercut, "pricing.spot_offer_quantile": p.spot_offer_quantile,
        "pricing.reclaim_penalty_multiple": p.reclaim_penalty_multiple, "pricing.valid_hours": p.valid_hours,
        "pricing.spot_days": p.spot_days, "pricing.block_hours": p.block_hours,
        "pricing.reserved_terms_days": ",".join(str(d) for d in p.reserved_terms_days),
        "pricing.term_discount": json.dumps({str(k): v for k, v in p.term_discount.items()}, sort_keys=True),
        "pricing.providers": ",".join(p.providers), "pricing.risk_model": "window" if p.risk.enabled else "forecast rules",
        "pricing.overrides": (f"{Path(ov).name} sha256:{hashlib.sha256(ov_text).hexdigest()[:12]}" if ov_text
                              else "none"),
    }
    return {k: str(v)[:500] for k, v in out.items() if v is not None}


def headline(night: dict[str, Any], result: dict[str, Any] | None) -> str:
    """One line a reviewer reads in the runs table: outcome, what was offered, what to look at."""
    if night.get("status") == "failed":
        reason = str(night.get("reason") or "").splitlines()[0][:200] if night.get("reason") else ""
        live = night.get("sheet_version")
        return (f"FAILED at {night.get('failed_step')}: {reason}; "
                + (f"sheet v{live} stays live" if live else "no sheet is live"))
    r = result or {}
    m = r.get("metrics") or {}
    if r.get("status") != "published" or not m:
        why = str(r.get("reason") or "").splitlines()[0][:200] if r.get("reason") else ""
        return f"{r.get('status', night.get('status'))}: sheet v{r.get('version')} stays live" + (f" ({why})" if why else "")
    res = sum(v for k, v in m.items() if k.startswith("gpu_hours.offered.reserved"))
    parts = [f"published sheet v{r.get('version')}", f"{m.get('items.offered', 0):,.0f} items",
             f"{m.get('gpu_hours.offered', 0):,.0f} GPU-hours offered (spot {m.get('gpu_hours.offered.spot', 0):,.0f}, "
             f"reserved {res:,.0f})", f"expected revenue ${m.get('revenue.expected', 0):,.0f}",
             f"mean discount {m.get('discount.mean', 0):.0%}"]
    if m.get("pools.held"):
        parts.append(f"{m['pools.held']:.0f} pool(s) held")
    if m.get("overrides.entries"):
        parts.append(f"{m['overrides.entries']:.0f} override(s) changed {m.get('overrides.items_changed', 0):.0f} item(s)")
    cap = sum(1 for w in r.get("warnings") or [] if "past the" in w and "daily cap" in w)
    if cap:
        parts.append(f"{cap} override(s) past the daily cap")
    return "; ".join(parts)


def record_parent(client, run_id: str, description: str, metrics: dict[str, float], params: dict[str, str]) -> None:
    """Description, metrics and params on the night's parent run (one batch call)."""
    import math
    import time

    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    ms = [Metric(k, round(float(v), 4), now, 0) for k, v in sorted(metrics.items())  # people read these
          if v is not None and math.isfinite(float(v))]
    ps = [Param(k, v) for k, v in sorted(params.items())]
    client.log_batch(run_id, metrics=ms, params=ps, tags=[RunTag("mlflow.note.content", description)])
