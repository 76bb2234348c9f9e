"""Prefect flow that prices the newest forecast and publishes a price sheet.

price, top to bottom: read the newest forecast, pools, last sheet and bookings -> check inputs
(stale telemetry or no forecast holds the last sheet; a pool with a bad forecast or stale
telemetry holds its last prices) -> load reference rates and build the market (references,
floors) -> refit demand from bookings -> optimize + guardrails -> publish (new version unless the
content is unchanged) -> diff vs the previous sheet -> log everything to one MLflow run.
"""
from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task

from pricing.checks import nothing_in_force_fails, pool_holds, telemetry_hold
from features.series import load_pool_series
from pricing.demand import DemandModel
from pricing.capacity_risk import fit_capacity_risk
from pricing.risk_calibration import apply_spot_calibration
from pricing.drawdown import measure
from pricing.diff import diff_items
from pricing.engine import price_fleet, reprice_expected_sold
from pricing.findings import explain_grouped, pool_findings
from pricing.optimizer import Market
from pricing.overrides import OverrideError, apply_overrides, load_overrides
from pricing.review import keyed, offer_metrics, overridden_items, override_effects, rounded
from pricing.reference import comparable_references, load_reference_rates
from pricing.reference_store import reference_age_warnings
from pricing.sheet import PriceSheet, highest_version, latest_sheet_path, point_latest, public_items, publish
from pipelines.retries import IO_RETRY
from pipelines.settings import Settings
from pipelines.tracking import ensure_experiment
from pipelines.warehouse_conn import open_warehouse
from warehouse import sheets as history
from warehouse.forecasts import latest_forecast_run, pool_last_observed


class Hold(Exception):
    """The inputs cannot be priced: the last published sheet stays in force."""


class NothingToSell(RuntimeError):
    """Nothing could be priced and no sheet is in force: a failure, one line per cause."""

    def __init__(self, reason: str, lines: list[str] | None = None):
        self.lines = lines or []
        super().__init__("\n".join([reason, *self.lines]))


def _utc(t: Any) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


@task(**IO_RETRY)
def load_pricing_inputs(settings: Settings, valid_from: pd.Timestamp) -> dict[str, Any]:
    con = open_warehouse(settings, "pricing")
    try:
        run = latest_forecast_run(con)
        if run is None:  # the flow holds; raising here would only be retried
            return {"run": None, "last": history.latest_sheet(con)}
        hourly = con.execute("SELECT * FROM forecasts WHERE forecast_id = ? AND grain = 'hour'",
                             [run["forecast_id"]]).df()
        f = settings.forecast
        seen = pool_last_observed(con, f.min_coverage, tuple(f.mask_flags))
        last = history.latest_sheet(con)
        last_items = history.sheet_items(con, int(last["version"])) if last else None
        day_ago = history.sheet_in_force(con, (valid_from - pd.Timedelta(hours=24)).to_pydatetime())
        anchor = history.sheet_items(con, day_ago) if day_ago is not None else last_items
        booked = history.active_bookings(con, valid_from.to_pydatetime())
        obs = history.booking_observations(con)
        series = load_pool_series(con, min_coverage=f.min_coverage, mask_flags=tuple(f.mask_flags))
        calibration = history.latest_spot_calibration(con, risk_score(settings))
        from pipelines.forecast_flow import _CALENDAR_SQL

        calendar = con.execute(_CALENDAR_SQL).df()
    finally:
        con.close()
    return {"run": run, "hourly": hourly, "seen": seen, "last": last, "last_items": last_items, "bookings": obs,
            "series": series, "anchor": anchor, "booked": booked, "calibration": calibration, "calendar": calendar}


def reference_rates_path(settings: Settings) -> Path:
    """The references in force: the newest imported version, else the configured file."""
    from pricing.reference_store import current_path

    p = settings.pricing
    return current_path(Path(p.references_dir)) or Path(p.reference_rates)


def market_for(pools: pd.DataFrame, caps: pd.Series, settings: Settings, rates: pd.DataFrame | None = None) -> Market:
    """References, floors and regions for these pools (pool, gpu_model) with capacities `caps`.

    GPU names resolve through the catalogue (and [pricing.gpu_aliases]); a pool whose name is
    unknown keeps gpu_class None and gets no reference, so its items are withdrawn and the
    findings say how to map it."""
    from pricing.costs import cost_table

    p = settings.pricing
    rates = load_reference_rates(reference_rates_path(settings)) if rates is None else rates
    catalog = p.catalog()
    pools = pools[["pool", "gpu_model"]].copy()
    pools = pools[pools["pool"].isin(caps.index)]
    pools["gpus_total"] = pools["pool"].map(caps)
    pools["region"] = pools["pool"].map(lambda x: p.pool_regions.get(x, p.region))
    resolved = catalog.resolve(pools["gpu_model"], p.gpu_aliases)
    costs = cost_table(resolved, catalog, p.cost_overrides(), p.usd_per_kwh, p.pue)
    pools = pools.merge(resolved[["gpu_model", "gpu_class"]], on="gpu_model", how="left")
    pools = pools.merge(costs[["gpu_model", "floor"]], on="gpu_model", how="left")
    known = resolved[resolved["gpu_class"].notna()]
    refs = comparable_references(
        rates, known["gpu_model"], dict(zip(known["gpu_model"], known["reference_classes"])), p.providers,
        p.reference_regions, factors=dict(zip(known["gpu_model"], known["performance_factor"])))
    return Market(pools=pools.reset_index(drop=True), references=refs, resolved=resolved, costs=costs)


@task
def build_market(inputs: dict[str, Any], settings: Settings, rates: pd.DataFrame | None = None) -> Market:
    """Every pool with telemetry, priced or not: a pool the forecast skipped is held, not dropped."""
    caps = inputs["series"].sort_values("ds").groupby("unique_id")["gpus_total"].last()
    return market_for(inputs["seen"], caps, settings, rates)


@task
def fit_demand(inputs: dict[str, Any], settings: Settings) -> DemandModel:
    return settings.pricing.demand_model().fit(inputs["bookings"])


def risk_score(settings: Settings) -> str:
    """Which spot risk score pricing publishes: the window-risk model's, or the forecast's."""
    return "window" if settings.pricing.risk.enabled else "forecast"


def inputs_fingerprint(run: dict[str, Any], valid_from: pd.Timestamp, settings: Settings, bookings: pd.DataFrame,
                       calibration: dict[str, Any] | None = None) -> str:
    """Same forecast, hour, reference file, pricing settings and bookings -> same fingerprint."""
    import hashlib

    h = hashlib.sha256()
    h.update(f"{run['forecast_id']}|{valid_from.isoformat()}|".encode())
    if calibration is not None:  # a new spot-risk curve changes what the sheet says
        h.update(f"risk:{calibration['fitted_at']}|".encode())
    h.update(reference_rates_path(settings).read_bytes())
    for f in (settings.pricing.gpu_catalog, settings.pricing.gpu_alias_file):
        h.update(Path(f).read_bytes())
    ov = settings.pricing.overrides
    h.update(Path(ov).read_bytes() if ov is not None and Path(ov).exists() else b"no-overrides")
    h.update(settings.pricing.model_dump_json().encode())
    h.update(pd.util.hash_pandas_object(bookings, index=False).values.tobytes() if len(bookings) else b"")
    return h.hexdigest()


@task
def publish_sheet(sheet: PriceSheet, inputs_sha: str, items: pd.DataFrame, settings: Settings,
                  forecast: pd.DataFrame | None = None) -> tuple[Path, Path]:
    """History rows and files in one unit: the transaction commits only after the files are in place."""
    con = open_warehouse(settings, "pricing")
    try:
        d = Path(settings.sheets_dir)
        name = f"price-sheet-{sheet.version:06d}"
        con.execute("BEGIN TRANSACTION")
        try:
            history.insert_sheet(con, sheet.header(), sheet.content_sha256, inputs_sha, items,
                                 str(d / f"{name}.json"), str(d / f"{name}.parquet"))
            paths = publish(sheet, d, set_latest=False, forecast=forecast)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        point_latest(d, sheet.version)  # readers switch only once the history has it
    finally:
        con.close()
    return paths


def internal_forecast(hourly: pd.DataFrame, valid_from: pd.Timestamp, sheet: PriceSheet) -> pd.DataFrame:
    """The hours a sheet sells, for its pools: what the API's internal forecast route serves."""
    pools = {i["pool"] for i in sheet.items}
    cols = ["unique_id", "ds", "model", "mean", "q05", "q10", "q25", "q50", "q75", "q90", "q95", "gpus_total", "origin"]
    f = hourly[hourly["unique_id"].isin(pools) & (pd.to_datetime(hourly["ds"], utc=True) >= valid_from)]
    return f[cols].sort_values(["unique_id", "ds"]).reset_index(drop=True)


def _mlflow_run(settings: Settings, as_of: pd.Timestamp, parent_run_id: str | None = None) -> str:
    """The pricing run: in the pricing experiment, or nested under a nightly run (in its experiment)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    tags = {"kind": "price"}
    if parent_run_id:  # nested under a night: the pricing experiment is not created empty
        exp_id = MlflowClient().get_run(parent_run_id).info.experiment_id
        tags["mlflow.parentRunId"] = parent_run_id
    else:
        exp_id = ensure_experiment(settings, settings.pricing.experiment)
    run = MlflowClient().create_run(exp_id, run_name=f"price {as_of:%Y-%m-%d %H:%M}", tags=tags)
    return run.info.run_id


@task
def log_pricing(run_id: str, settings: Settings, result: dict[str, Any], items: pd.DataFrame | None,
                diff: pd.DataFrame | None, demand: DemandModel | None, sheet_paths: tuple[Path, Path] | None,
                overrides_log: pd.DataFrame | None = None, findings: pd.DataFrame | None = None,
                risk=None) -> None:
    from mlflow.tracking import MlflowClient

    from pricing.plots import reserved_chart, spot_chart

    c = MlflowClient(settings.mlflow_tracking_uri)
    p = settings.pricing
    params = {f"pricing.{k}": (json.dumps(v, default=str) if isinstance(v, (list, dict)) else str(v))[:500]
              for k, v in p.model_dump().items() if k not in ("costs",)}
    params.update({f"pricing.costs.{g}": json.dumps(v)[:500] for g, v in sorted(p.cost_overrides().items())})
    for k, v in params.items():
        c.log_param(run_id, k, v)
    c.set_tag(run_id, "status", result["status"])
    c.set_tag(run_id, "reason", str(result.get("reason") or "")[:5000])
    if result.get("version") is not None:
        c.set_tag(run_id, "sheet_version", str(result["version"]))
    metrics = {k: round(float(v), 4) for k, v in result.get("metrics", {}).items()}  # shown in the UI as is
    for k, v in metrics.items():
        c.log_metric(run_id, k, v)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        if sheet_paths:
            for path in sheet_paths:
                c.log_artifact(run_id, str(path), "sheet")
        if items is not None and len(items):
            items.to_parquet(t / "items_all.parquet", index=False)
            c.log_artifact(run_id, str(t / "items_all.parquet"), "sheet")
            w = items[~items["offered"].astype(bool)][["pool", "product", "start", "withdraw_reason"]]
            w.to_csv(t / "withdrawn.csv", index=False)
            # the sheet as a reviewer reads it: prices to a hundredth of a cent, shares to 0.1%
            cols = [c for c in ("pool", "gpu_model", "product", "start", "end", "gpus_offered", "price_per_gpu_hour",
                                "reference_price", "discount_vs_reference", "interruption_risk", "break_probability",
                                "floor", "ceiling", "guardrails") if c in items]
            rounded(items[items["offered"].astype(bool)][cols]).to_csv(t / "offered.csv", index=False)
            c.log_artifact(run_id, str(t / "offered.csv"), "sheet")
            c.log_artifact(run_id, str(t / "withdrawn.csv"), "sheet")
            charts = t / "charts"
            charts.mkdir()
            offered = items[items["offered"].astype(bool)]
            for g, prods in offered.groupby("gpu_model")["product"]:  # spot_<gpu>.png, reserved_<gpu>.png
                name = str(g).replace("/", "_").replace(" ", "_")
                if (prods == "spot").any():
                    (charts / f"spot_{name}.png").write_bytes(spot_chart(items, g))
                if prods.astype(str).str.startswith("reserved").any():
                    (charts / f"reserved_{name}.png").write_bytes(
                        reserved_chart(items, g, term_discount=settings.pricing.term_discount))
            c.log_artifacts(run_id, str(charts), "charts")
        if findings is not None and len(findings):
            rounded(findings).to_csv(t / "findings.csv", index=False)
            c.log_artifact(run_id, str(t / "findings.csv"), "sheet")
            if items is not None and len(items) and "gpu_model" in items:
                floors = (items.groupby(["pool", "gpu_model", "gpu_class"], dropna=False)["floor"].max()
                          .reset_index())
                rounded(floors).to_csv(t / "floors.csv", index=False)
                c.log_artifact(run_id, str(t / "floors.csv"), "sheet")
        if diff is not None:
            rounded(diff).to_csv(t / "diff.csv", index=False)
            c.log_artifact(run_id, str(t / "diff.csv"), "sheet")
        if demand is not None:
            pairs = (sorted(set(zip(items["gpu_model"].astype(str), items["product"].astype(str))))
                     if items is not None and len(items) else None)
            rounded(demand.table(pairs)).to_csv(t / "demand_fit.csv", index=False)
            c.log_artifact(run_id, str(t / "demand_fit.csv"), "demand")
        if risk is not None:
            _log_risk_model(c, run_id, risk, t)
        ov = p.overrides
        if ov is not None and Path(ov).exists():  # the file as it was when this run priced
            c.log_artifact(run_id, str(ov), "overrides")
        if overrides_log is not None and len(overrides_log):
            effects = result.get("overrides")
            table = effects if isinstance(effects, pd.DataFrame) and len(effects) else overrides_log
            rounded(table).to_csv(t / "overrides_applied.csv", index=False)
            c.log_artifact(run_id, str(t / "overrides_applied.csv"), "overrides")
    c.set_terminated(run_id, "FINISHED" if result["status"] != "failed" else "FAILED")


def _log_risk_model(c, run_id: str, risk, t: Path) -> None:
    """What the night's window-risk model learned from, and its calibration per window: the share
    of the newest windows (held out of fitting) whose minimum fell under the model's 5% / 20% / 50%
    levels (a calibrated model: 0.05 / 0.20 / 0.50)."""
    m = risk.model
    c.set_tag(run_id, "risk_model", "fitted" if risk.fitted else "not fitted (too little history): forecast rules")
    for k in ("n_fit_", "n_calibration_", "stride_"):
        if hasattr(m, k):
            c.log_metric(run_id, f"risk_model.{k.rstrip('_')}", round(float(getattr(m, k)), 4))
    if not risk.fitted:
        return
    rows = [{"length_hours": L, "lead_hours": a, "windows": len(u), "pit_below_0.05": float(np.mean(u < 0.05)),
             "pit_below_0.20": float(np.mean(u < 0.2)), "pit_below_0.50": float(np.mean(u < 0.5))}
            for (L, a), u in sorted(m.pit_.items())]
    out = t / "risk_model"
    out.mkdir(exist_ok=True)
    rounded(pd.DataFrame(rows), 3).to_csv(out / "calibration_windows.csv", index=False)
    c.log_artifacts(run_id, str(out), "risk_model")


def _store_findings(settings: Settings, run_id: str, findings: pd.DataFrame) -> None:
    con = open_warehouse(settings, "pricing")
    try:
        history.record_findings(con, datetime.now(timezone.utc), run_id, findings)
    finally:
        con.close()


def _record(settings: Settings, as_of: pd.Timestamp, status: str, version: int | None, reason: str | None,
            run_id: str | None) -> None:
    con = open_warehouse(settings, "pricing")
    try:
        history.record_run(con, as_of.to_pydatetime(), status, version, reason, run_id)
    finally:
        con.close()


@flow(name="price", log_prints=True)
def price(settings: Settings | None = None, as_of: datetime | None = None, force: bool = False,
          parent_run_id: str | None = None) -> dict[str, Any]:
    """Price the newest forecast and publish a sheet (or hold the last one and say why)."""
    settings = settings or Settings()
    p = settings.pricing
    rules = p.rules()
    logger = get_run_logger()
    as_of_ts = _utc(as_of or datetime.now(timezone.utc))
    run_id = _mlflow_run(settings, as_of_ts, parent_run_id)
    items = diff = demand = paths = overrides_log = findings = risk = None
    override_table, override_warnings, items_overridden = None, [], 0
    ref_warnings: list[str] = []
    in_force = True
    last_version = None
    try:
        valid_from = as_of_ts.ceil("h")
        inputs = load_pricing_inputs(settings, valid_from)
        last_version = int(inputs["last"]["version"]) if inputs["last"] else None
        in_force = not nothing_in_force_fails(last_version is not None, latest_sheet_path(settings.sheets_dir) is not None)
        rates = load_reference_rates(reference_rates_path(settings))
        ref_warnings = reference_age_warnings(rates[rates["provider"].isin(p.providers)], as_of_ts,
                                              p.references_max_age_days)
        for w in ref_warnings:
            logger.warning(w)
        if inputs["run"] is None:
            raise Hold("no forecast in the warehouse: run `idlecap forecast` first")
        run = inputs["run"]
        data_through = _utc(run["data_through"])
        why = telemetry_hold(as_of_ts, data_through, rules.stale_after_hours)
        if why:
            raise Hold(why)
        fingerprint = inputs_fingerprint(run, valid_from, settings, inputs["bookings"], inputs.get("calibration"))
        if inputs["last"] is not None and inputs["last"]["inputs_sha256"] == fingerprint and not force:
            result = {"status": "unchanged", "version": last_version, "metrics": {}, "mlflow_run_id": run_id,
                      "reason": f"sheet v{last_version} was priced from the same inputs (use force to re-price)",
                      "warnings": list(ref_warnings)}
            _record(settings, as_of_ts, "unchanged", last_version, result["reason"], run_id)
            log_pricing(run_id, settings, result, None, None, None, None)
            return {**result, "diff": None, "items": None}
        market = build_market(inputs, settings, rates)
        caps = market.pools.set_index("pool")["gpus_total"]
        seen = inputs["seen"].set_index("pool")["last_observed"].map(_utc, na_action="ignore")
        hold = pool_holds(inputs["hourly"], caps, valid_from, int(rules.spot_days * 24 + rules.block_hours), seen,
                          data_through, rules.pool_stale_hours)
        if len(hold) == len(caps):
            raise Hold(f"every pool failed its checks: {sorted(set(hold.values()))}",
                       [f"{pool}: held: {why}" for pool, why in sorted(hold.items())][:20])
        demand = fit_demand(inputs, settings)
        risk = fit_capacity_risk(inputs["series"], inputs["calendar"], valid_from, rules, p.risk.model()) \
            if p.risk.enabled else None
        drawdowns = measure(inputs["series"], rules.reserved_terms_days) if risk is None or not risk.fitted else None
        try:
            overrides = load_overrides(p.overrides)
        except OverrideError as exc:
            raise Hold(f"pricing overrides not applied, so nothing is published: {exc}") from None
        items = price_fleet(inputs["hourly"], market, rules, demand, valid_from, inputs["last_items"], hold, drawdowns,
                            anchor=inputs["anchor"], booked=inputs["booked"], risk=risk)
        if overrides:
            before = items
            trace: list[pd.DataFrame] = []
            items, overrides_log = apply_overrides(items, overrides, inputs["last_items"], valid_from, trace)
            override_table, override_warnings = override_effects(before, items, overrides_log, rules.max_daily_change,
                                                                 trace)
            items_overridden = overridden_items(items, trace)
            key = ["pool", "product", "start"]
            prior = keyed(items[key]).merge(keyed(before[key + ["price_per_gpu_hour"]]).drop_duplicates(key),
                                            on=key, how="left")["price_per_gpu_hour"].to_numpy(float)
            items["expected_gpu_hours_sold"] = reprice_expected_sold(items, prior, demand).to_numpy()
            for w in override_warnings:
                logger.warning(w)
        items = apply_spot_calibration(items, inputs.get("calibration"))
        findings = pool_findings(items, market, rules.min_undercut, rules.usd_per_kwh, rules.pue, str(p.gpu_alias_file))
        _store_findings(settings, run_id, findings)
        offered = items[items["offered"].astype(bool)]
        if offered.empty:
            reasons = items["withdraw_reason"].value_counts().head(5).to_dict()
            raise Hold(f"no item could be offered (withdrawn: {reasons})", explain_grouped(findings))
        con = open_warehouse(settings, "pricing")
        try:
            version = history.next_version(con, highest_version(settings.sheets_dir))
        finally:
            con.close()
        sheet = PriceSheet(
            version=version, generated_at=pd.Timestamp.now(tz="UTC").floor("s"), valid_from=valid_from,
            valid_until=valid_from + pd.Timedelta(hours=rules.valid_hours), data_through=data_through,
            mlflow_run_id=run_id, forecast_id=run["forecast_id"], items=public_items(offered), currency=p.currency,
        )
        diff, counts = diff_items(items, inputs["last_items"], p.diff_threshold)
        con = open_warehouse(settings, "pricing")
        try:  # the curves this pass priced with (published or not), next to the MLflow copy
            history.record_demand_fits(con, demand.table())
        finally:
            con.close()
        metrics = offer_metrics(items, len(hold), overrides_log, counts, items_overridden, rules.term_discount)
        # everything that can fail is done: publishing is the last step that may raise
        if inputs["last"] is not None and inputs["last"]["content_sha256"] == sheet.content_sha256:
            status, version, reason = "unchanged", last_version, "same content as the last sheet"
        else:
            paths = publish_sheet(sheet, fingerprint, items, settings, internal_forecast(inputs["hourly"], valid_from, sheet))
            status, reason = "published", None
        result = {"status": status, "version": version, "reason": reason, "metrics": metrics, "held_pools": hold,
                  "findings": findings,
                  "valid_from": str(valid_from), "diff_rows": len(diff), "mlflow_run_id": run_id,
                  "paths": [str(x) for x in paths] if paths else None,
                  "warnings": list(ref_warnings) + override_warnings, "overrides": override_table}
    except Hold as exc:
        lines = list(exc.args[1]) if len(exc.args) > 1 else []
        if not in_force:  # nothing in force and nothing to sell: the night failed, say why per cause
            failure = NothingToSell(f"nothing to sell, so no sheet was published: {exc.args[0]}", lines)
            _record(settings, as_of_ts, "failed", None, str(failure), run_id)
            log_pricing(run_id, settings, {"status": "failed", "reason": str(failure)}, items, None, demand, None,
                        overrides_log, findings)
            raise failure from None
        reason = "\n".join([exc.args[0], *lines])
        logger.warning("holding the last sheet: %s", reason)
        result = {"status": "held", "version": last_version, "reason": reason, "metrics": {}, "mlflow_run_id": run_id,
                  "warnings": list(ref_warnings), "findings": findings}
    except Exception as exc:
        _record(settings, as_of_ts, "failed", last_version, f"{type(exc).__name__}: {exc}", run_id)
        log_pricing(run_id, settings, {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}, None, None, None, None)
        raise
    # after a publish nothing may turn the night into a failure: the sheet is live whatever happens here
    try:
        _record(settings, as_of_ts, result["status"], result["version"], result.get("reason"), run_id)
    except Exception as exc:  # noqa: BLE001
        logger.error("sheet v%s %s, but the pricing run was not recorded: %s", result["version"], result["status"], exc)
        result.setdefault("warnings", []).append(f"pricing_runs not recorded: {exc}")
    try:
        log_pricing(run_id, settings, result, items, diff, demand, paths, overrides_log, findings, risk)
    except Exception as exc:  # noqa: BLE001
        logger.error("sheet v%s %s, but MLflow logging failed: %s", result["version"], result["status"], exc)
        result.setdefault("warnings", []).append(f"MLflow logging incomplete: {exc}")
    return {**result, "diff": diff, "items": items}


BREAK_TARGETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
SAFETY_BAR = 0.97  # reserved safety at sample level the per-lease target is chosen to meet


@flow(name="backtest_pricing", log_prints=True)
def backtest_pricing(settings: Settings | None = None) -> dict[str, Any]:
    """Replay rolling-origin forecasts, price them, score reserved safety/yield/revenue vs naive; log to MLflow."""
    from mlflow.tracking import MlflowClient

    from models import catalog
    from pipelines.forecast_flow import _lgbm_kwargs, load_inputs
    from pipelines.progress import report as progress
    from pricing.backtest import by_pool_size, choose_target, pricing_backtest, target_curve
    from pricing.plots import safety_yield_chart
    from pricing.risk_calibration import calibrate_on_early, reliability_chart

    settings = settings or Settings()
    p = settings.pricing
    rules = p.rules()
    df, cal = load_inputs(settings)
    con = open_warehouse(settings, "pricing")
    try:
        pools = con.execute("SELECT pool, gpu_model FROM pools").df()
    finally:
        con.close()
    market = market_for(pools, df.groupby("unique_id")["gpus_total"].max(), settings)
    h = p.backtest_lead_hours + 24 * max(max(rules.reserved_terms_days), rules.spot_days) + rules.block_hours
    model = catalog.build(p.backtest_model, h, _lgbm_kwargs(settings.forecast), settings.forecast.processes,
                          settings.forecast.anchor_decay)
    rep = pricing_backtest(model, df, cal, market, rules, p.demand_model().fit(None), p.backtest_lead_hours,
                           p.backtest_windows, p.naive_discount,
                           on_window=lambda done, total: progress("price_backtest", (done, total)),
                           risk_model=p.risk.model() if p.risk.enabled else None, targets=BREAK_TARGETS)
    curve = target_curve(rep.curve, rep.origins)
    chosen = choose_target(curve, SAFETY_BAR) if len(curve) else None
    run_id = _mlflow_run(settings, pd.Timestamp.now(tz="UTC"))
    c = MlflowClient(settings.mlflow_tracking_uri)
    c.set_tag(run_id, "kind", "price_backtest")
    c.log_param(run_id, "backtest.model", p.backtest_model)
    c.log_param(run_id, "backtest.origins", ",".join(str(o) for o in rep.origins))
    c.log_param(run_id, "backtest.lead_hours", p.backtest_lead_hours)
    c.log_param(run_id, "backtest.naive_discount", p.naive_discount)
    c.log_param(run_id, "pricing.reserved_break_target", p.reserved_break_target)
    c.log_param(run_id, "risk_model", "window" if p.risk.enabled else "forecast quantiles + drawdown guard")
    if len(curve):
        c.set_tag(run_id, "reserved.target_chosen_on_early_origins", "none meets the bar" if chosen is None else f"{chosen:g}")
        for r in curve.to_dict("records"):
            for k in ("safety", "achievable", "yield"):
                if pd.notna(r[k]):
                    c.log_metric(run_id, f"curve.{r['origins']}.target_{r['target']:g}.{k}", round(float(r[k]), 4))
    for r in rep.summary.to_dict("records"):
        for k in ("safety", "safety_hourly", "yield", "achievable", "safe_achievable", "oracle_gpu_hours",
                  "revenue_gross", "penalties", "revenue_net", "offered_gpu_hours",
                  "predicted_risk", "realized_risk"):
            v = r.get(k)
            if v is not None and pd.notna(v):
                c.log_metric(run_id, f"{r['policy']}.{r['term']}.{k}", round(float(v), 4))
    cal = calibrate_on_early(rep.spot) if len(rep.spot) and rep.spot["origin"].nunique() >= 2 else None
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        rounded(rep.summary).to_csv(t / "summary.csv", index=False)
        rep.offers.to_parquet(t / "offers.parquet", index=False)
        if len(rep.spot):
            rep.spot.to_parquet(t / "spot_blocks.parquet", index=False)
        if len(curve):
            rounded(curve).to_csv(t / "reserved_target_curve.csv", index=False)
            (t / "reserved_safety_yield.png").write_bytes(safety_yield_chart(curve, SAFETY_BAR, chosen,
                                                                              p.reserved_break_target))
        by_size = by_pool_size(rep.offers)
        if len(by_size):
            rounded(by_size).to_csv(t / "reserved_by_pool_size.csv", index=False)
        if cal is not None:
            rounded(cal.summary).to_csv(t / "spot_risk_calibration.csv", index=False)
            rounded(cal.bands).to_csv(t / "spot_risk_reliability.csv", index=False)
            rounded(cal.calibrator.to_frame()).to_csv(t / "spot_risk_curve.csv", index=False)
            (t / "spot_risk_reliability.png").write_bytes(reliability_chart(
                cal.bands, f"spot risk on the later {len(cal.later_origins)} origins (fit on the earlier "
                           f"{len(cal.early_origins)})"))
        c.log_artifacts(run_id, str(t), "pricing_backtest")
    if cal is not None:
        for r in cal.summary.to_dict("records"):
            key = {"raw": "raw", "calibrated": "calibrated"}.get(r["risk"], "constant")
            c.log_metric(run_id, f"spot_risk.{key}.brier", round(float(r["brier"]), 4))
            c.log_metric(run_id, f"spot_risk.{key}.mean_predicted", round(float(r["mean_predicted"]), 4))
        c.set_tag(run_id, "spot_risk.calibration", "adopted" if cal.adopted else "not adopted")
        if cal.adopted:  # otherwise nothing stored: pricing keeps the raw score
            con = open_warehouse(settings, "pricing")
            try:
                briers = dict(zip(cal.summary["risk"], cal.summary["brier"]))
                history.record_spot_calibration(con, run_id, cal.calibrator.x_, cal.calibrator.y_,
                                                cal.calibrator.n_blocks_, cal.early_origins, cal.later_origins, briers,
                                                risk_score(settings))
            finally:
                con.close()
    c.set_terminated(run_id, "FINISHED")
    return {"report": rep, "mlflow_run_id": run_id, "calibration": cal, "curve": curve, "chosen_target": chosen,
            "by_pool_size": by_pool_size(rep.offers)}
