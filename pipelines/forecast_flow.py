"""Prefect flows that train the forecaster and write forecasts.

train_forecaster, top to bottom: read pool_hourly and the versioned calendar -> backtest every
candidate from rolling origins (calendar as known at each origin) -> choose a model per pool ->
fit the chosen models on all history -> log params, data window and hash, metrics, tables,
fan charts and the model to MLflow -> register it; `champion` moves only if it beats the champion.

forecast: load the champion -> read the newest history and plan -> forecast hourly and daily
totals -> write them to DuckDB under one forecast_id (re-running replaces, never duplicates).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from features.planned import plan_as_of
from features.series import data_fingerprint, load_pool_series
from models import catalog
from models.base import check_forecast_frame
from models.daily import to_daily
from models.backtest import assemble_cv, backtest_origin, backtest_origins
from models.selection import SELECTED, BacktestReport, final_forecaster, select_from_cv
from pipelines.compute import handoff, read_handoff, task_runner
from pipelines.progress import report as progress
from pipelines.retries import IO_RETRY
from pipelines.settings import ForecastSettings, Settings
from pipelines.tracking import ensure_experiment
from pipelines.warehouse_conn import open_warehouse
from warehouse.forecasts import ForecastRun, write_forecast

_CALENDAR_SQL = "SELECT run_id, pool, start, \"end\", gpus, priority, status, known_at FROM training_calendar"


def _lgbm_kwargs(f: ForecastSettings) -> dict[str, Any]:
    return dict(
        n_estimators=f.lgbm_n_estimators, learning_rate=f.lgbm_learning_rate, num_leaves=f.lgbm_num_leaves,
        max_train_rows=f.lgbm_max_train_rows, country=f.holidays_country, tz=f.timezone, n_jobs=f.lgbm_threads,
    )


SLACK_DAYS = 1  # pricing may start reserved terms at the midnight after next (sheet valid from a later hour)


def full_horizon(f: ForecastSettings) -> int:
    """Hours the served model must reach from any origin hour (see horizon_from)."""
    days = f.daily_horizon_days + SLACK_DAYS if f.daily_horizon_days else 0
    return max(f.horizon_hours, days * 24 + 23 if days else 0)


def horizon_from(origin: pd.Timestamp, f: ForecastSettings) -> int:
    """Hours to forecast from this origin: the spot horizon and `daily_horizon_days` (+1 spare) whole days.

    Every hour is stored: reserved pricing needs each hour's quantiles over a 30-day window."""
    to_midnight = (24 - origin.hour) % 24
    days = f.daily_horizon_days + SLACK_DAYS if f.daily_horizon_days else 0
    return max(f.horizon_hours, to_midnight + days * 24 if days else 0)


@task(**IO_RETRY)
def load_inputs(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Series (masked hours as NaN) and every version of the training calendar."""
    f = settings.forecast
    con = open_warehouse(settings, "forecast")
    try:
        df = load_pool_series(con, min_coverage=f.min_coverage, mask_flags=tuple(f.mask_flags))
        cal = con.execute(_CALENDAR_SQL).df()
    finally:
        con.close()
    if df.empty:
        raise ValueError("pool_hourly is empty: ingest telemetry first (`idlecap ingest`)")
    return df, cal


@task(cache_policy=NO_CACHE)
def backtest_origin_task(series: str, calendar: str, origin: pd.Timestamp, settings: Settings) -> list[pd.DataFrame]:
    """Every candidate at one origin (each distinct model fitted once), on whichever worker the runner picks."""
    f = settings.forecast
    candidates = catalog.build_all(f.models, f.backtest_horizon_hours, _lgbm_kwargs(f), f.processes, f.anchor_decay)
    return backtest_origin(candidates, read_handoff(series), read_handoff(calendar), origin,
                           h=f.backtest_horizon_hours, window=f.backtest_window, window_size=f.backtest_window_hours)


@flow(name="backtest_origins")
def backtest_on_runner(paths: dict[str, str], origins: list[pd.Timestamp], settings: Settings) -> list[pd.DataFrame]:
    """Every backtest origin as a task on this flow's runner (Dask or threads)."""
    futures = [backtest_origin_task.submit(paths["series"], paths["calendar"], o, settings) for o in origins]
    out: list[pd.DataFrame] = []
    n = len(settings.forecast.models)
    for i, fut in enumerate(futures):
        out.extend(fut.result())
        progress("backtest", ((i + 1) * n, len(futures) * n, f"origin {i + 1}/{len(futures)}"))
    return out


def run_backtest(df: pd.DataFrame, calendar: pd.DataFrame, settings: Settings) -> BacktestReport:
    """Rolling-origin backtest of every candidate with windows on the [compute] runner, then the choice."""
    f = settings.forecast
    origins = backtest_origins(df, f.backtest_horizon_hours, f.backtest_windows, f.backtest_step_hours)
    names = [c.name for c in catalog.build_all(f.models, f.backtest_horizon_hours, _lgbm_kwargs(f), f.processes,
                                               f.anchor_decay)]
    runner = task_runner(settings, df["unique_id"].nunique())
    with handoff(settings, series=df, calendar=calendar) as paths:
        pieces = backtest_on_runner.with_options(task_runner=runner)(paths, list(origins), settings)
    return select_from_cv(assemble_cv(pieces, calendar), names, df)


@task
def fit_final(df: pd.DataFrame, calendar: pd.DataFrame, bt: BacktestReport, settings: Settings):
    f = settings.forecast
    candidates = catalog.build_all(f.models, full_horizon(f), _lgbm_kwargs(f), f.processes, f.anchor_decay)
    return final_forecaster(bt, candidates).fit(df, calendar)


def _newest_plan(calendar: pd.DataFrame) -> pd.DataFrame:
    """Newest version of every run, still planned; known_at dropped (it is the plan in force)."""
    return plan_as_of(calendar, pd.Timestamp.max.tz_localize("UTC")).drop(columns="known_at")


def version_description(df: pd.DataFrame, bt: BacktestReport, metric: str) -> str:
    """The registry text of a version: what it was trained on and how it scored, rounded for people."""
    o = bt.overall.set_index("model")
    chosen = SELECTED if SELECTED in o.index else bt.default

    def line(m: str) -> str:
        r = o.loc[m]
        return (f"- {m}: MAE {r['mae']:.2f} GPUs, MASE {r.get('mase_mean', float('nan')):.3f} "
                f"(median over pools {r.get('mase_median', float('nan')):.3f}), "
                f"{r.get('mae_vs_snaive', float('nan')):.2f}x seasonal naive, "
                f"80% interval coverage {r.get('coverage80', float('nan')):.0%}")

    return "\n".join([
        f"Per-pool forecaster trained on {df['unique_id'].nunique()} pools, hourly idle GPUs "
        f"{df['ds'].min():%Y-%m-%d %H:%M} to {df['ds'].max():%Y-%m-%d %H:%M} UTC "
        f"({int(df['y'].notna().sum()):,} observed hours); default model {bt.default}.",
        f"Rolling-origin backtest over {len(bt.origins)} origins (promotion on {metric}):",
        *[line(m) for m in (chosen, "snaive_24", "naive") if m in o.index],
    ])


@task
def log_to_mlflow(df: pd.DataFrame, calendar: pd.DataFrame, bt: BacktestReport, model, settings: Settings,
                  parent_run_id: str | None = None) -> dict[str, Any]:
    """One MLflow run (nested under `parent_run_id` if given): params, data window + hash, metrics,
    tables, fan charts, model; register."""
    import mlflow

    from models.plots import fan_chart
    from models.registry import log_forecaster, register_and_promote
    from pricing.review import rounded

    f = settings.forecast
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    # nested under a night: the night's experiment (the training experiment is not created empty)
    exp_id = (mlflow.MlflowClient().get_run(parent_run_id).info.experiment_id if parent_run_id
              else ensure_experiment(settings, f.experiment))
    observed = df[df["y"].notna()]
    data_hash = data_fingerprint(df)
    with mlflow.start_run(run_name=f"train {observed['ds'].max():%Y-%m-%d %H:%M}", experiment_id=exp_id,
                          parent_run_id=parent_run_id) as run:
        mlflow.log_params({f"forecast.{k}": (json.dumps(v) if isinstance(v, list) else v)
                           for k, v in f.model_dump().items()})
        mlflow.log_params({
            "data.start": str(df["ds"].min()), "data.end": str(df["ds"].max()),
            "data.pools": df["unique_id"].nunique(), "data.rows": len(df),
            "data.masked_or_missing_rows": int(df["y"].isna().sum()),
            "data.calendar_versions": len(calendar), "data.hash": data_hash,
            "backtest.origins": ",".join(str(o) for o in bt.origins),
            "selection.default": bt.default,
        })
        mlflow.set_tags({"data_hash": data_hash, "kind": "train_forecaster"})
        for row in bt.overall.to_dict("records"):
            m = row.pop("model")
            mlflow.log_metrics({f"{m}.{k}": round(float(v), 4) for k, v in row.items() if pd.notna(v)})
        sel = bt.per_pool[bt.per_pool["model"] == SELECTED]
        if len(sel) <= 200:
            mlflow.log_metrics({f"pool.{u}.mase": round(float(v), 4) for u, v in zip(sel["unique_id"], sel["mase"])
                                if pd.notna(v)})
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            rounded(bt.overall).to_csv(t / "metrics_overall.csv", index=False)
            rounded(bt.per_pool).to_csv(t / "metrics_per_pool.csv", index=False)
            bt.cv.to_parquet(t / "backtest.parquet", index=False)
            pd.Series(bt.choice, name="model").rename_axis("pool").to_csv(t / "choice_per_pool.csv")
            for name in ("metrics_overall.csv", "metrics_per_pool.csv", "backtest.parquet", "choice_per_pool.csv"):
                mlflow.log_artifact(str(t / name), artifact_path="backtest")
            # fan charts: the largest pools, forecast from the end of the data with the newest plan
            plan = _newest_plan(calendar)
            fc = model.predict(f.horizon_hours, X_df=plan)
            caps = df.groupby("unique_id")["gpus_total"].last().sort_values(ascending=False)
            charts = t / "fan_charts"
            charts.mkdir()
            for uid in caps.index[: f.fan_charts]:
                png = fan_chart(
                    df[df["unique_id"] == uid], fc[fc["unique_id"] == uid],
                    plan[plan["unique_id"] == uid],
                    title=f"{uid}: idle GPUs, {bt.choice.get(uid, bt.default)} (backtest choice)",
                    spot_days=settings.pricing.spot_days, origin_label="forecast origin (end of the data)",
                )
                (charts / f"{uid}.png".replace("/", "_")).write_bytes(png)
            mlflow.log_artifacts(str(charts), artifact_path="fan_charts")
        info = log_forecaster(model)
        score = bt.score(SELECTED if SELECTED in set(bt.overall["model"]) else bt.default, f.promotion_metric)
        promo = register_and_promote(
            info.model_uri, f.registered_model, score, f.promotion_metric, f.min_improvement,
            tags={"data_hash": data_hash, "data_end": str(df["ds"].max()), "run_id": run.info.run_id},
            description=version_description(df, bt, f.promotion_metric),
        )
        mlflow.set_tags({"registered_version": promo.version, "promotion": promo.reason})
    return {"run_id": run.info.run_id, **asdict(promo)}


@flow(name="train_forecaster", log_prints=True)
def train_forecaster(settings: Settings | None = None, parent_run_id: str | None = None) -> dict[str, Any]:
    """Backtest, choose per pool, fit, log to MLflow, register (champion only if better)."""
    settings = settings or Settings()
    logger = get_run_logger()
    df, cal = load_inputs(settings)
    bt = run_backtest(df, cal, settings)
    model = fit_final(df, cal, bt, settings)
    result = log_to_mlflow(df, cal, bt, model, settings, parent_run_id)
    logger.info("trained: %s", result)
    return {**result, "overall": bt.overall.to_dict("records"), "choice": bt.choice}


@flow(name="backtest_forecasters", log_prints=True)
def backtest_forecasters(settings: Settings | None = None) -> dict[str, Any]:
    """Backtest only (no MLflow, no registration): the per-model and per-pool metric tables."""
    settings = settings or Settings()
    df, cal = load_inputs(settings)
    bt = run_backtest(df, cal, settings)
    return {"overall": bt.overall, "per_pool": bt.per_pool, "choice": bt.choice}


@task(**IO_RETRY)
def load_champion_task(settings: Settings):
    import mlflow

    from models.registry import load_champion

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return load_champion(settings.forecast.registered_model)


@task
def write_forecasts(run: ForecastRun, hourly: pd.DataFrame, daily: pd.DataFrame, settings: Settings) -> int:
    con = open_warehouse(settings, "forecast")
    try:
        return write_forecast(con, run, hourly, daily)
    finally:
        con.close()


@flow(name="forecast", log_prints=True)
def forecast(settings: Settings | None = None) -> dict[str, Any]:
    """Forecast every pool from the newest data with the champion; store hourly + daily rows."""
    settings = settings or Settings()
    f = settings.forecast
    model, version, run_id = load_champion_task(settings)
    df, cal = load_inputs(settings)
    plan = _newest_plan(cal)
    H = horizon_from(df["ds"].max() + pd.Timedelta(hours=1), f)
    fc = model.predict(H, X_df=plan, new_df=df)
    caps = df.sort_values("ds").groupby("unique_id")["gpus_total"].last()
    check_forecast_frame(fc, caps.to_dict())
    missing = sorted(set(df["unique_id"]) - set(fc["unique_id"]))
    if missing:
        get_run_logger().warning("no forecast for %d pool(s) without any usable history: %s", len(missing), missing[:20])
    fc["gpus_total"] = fc["unique_id"].map(caps)
    if "source_model" in fc:
        fc["model"] = fc["source_model"]
    hourly = fc
    daily = to_daily(fc) if f.daily_horizon_days else fc.iloc[0:0]
    if len(daily):
        first = daily["ds"].min()
        daily = daily[daily["ds"] < first + pd.Timedelta(days=f.daily_horizon_days)].copy()
        daily["gpus_total"] = daily["unique_id"].map(caps) * 24
    origin = fc["ds"].min()
    run = ForecastRun(
        forecast_id=f"{f.registered_model}:v{version}:{origin:%Y%m%dT%H%MZ}", origin=origin.to_pydatetime(),
        data_through=df.loc[df["y"].notna(), "ds"].max().to_pydatetime(), model_name=f.registered_model,
        model_version=version, run_id=run_id, horizon_hours=f.horizon_hours, daily_days=f.daily_horizon_days,
    )
    rows = write_forecasts(run, hourly, daily, settings)
    return {"forecast_id": run.forecast_id, "origin": str(origin), "model_version": version,
            "hourly_rows": len(hourly), "daily_rows": len(daily), "rows_written": rows,
            "pools_without_forecast": missing}
