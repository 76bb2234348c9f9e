"""The nightly flow: ingest -> refresh pool_hourly -> (re)train if due -> forecast -> price -> publish.

Thin wiring over the other flows, which run as subflows. One MLflow parent run per night (in the
`idlecap-nightly` experiment) holds a nested run per step (ingest, train, forecast, price), tags
for the sheet version and data window, and `summary.md`, written for the pricing analyst. Every
night is one row of the `nightly_runs` table. A failure at any step publishes nothing (a sheet
is only ever published by the last step), leaves the last good sheet live, and is recorded in
three places: the Prefect state (the flow re-raises), the MLflow parent run (FAILED, with
the failed step and reason tags) and `nightly_runs` (shown by `idlecap status`).
"""
from __future__ import annotations

import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.task_runners import ThreadPoolTaskRunner

from pipelines.forecast_flow import forecast, load_inputs, train_forecaster
from pipelines.ingest_flow import ingest_calendar, ingest_telemetry
from pipelines.night_record import headline, kept_sheet_metrics, live_week, night_params, record_parent
from pipelines.night_charts import log_review_charts
from pipelines.pricing_flow import price
from pipelines.retries import IO_RETRY
from pipelines.settings import Settings, load_settings
from pipelines.tracking import ensure_experiment
from pipelines.warehouse_conn import open_warehouse
from warehouse.nightly import live_errors, record_night


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _record(settings: Settings, night_id: str, **fields: Any) -> None:
    con = open_warehouse(settings, "nightly")
    try:
        record_night(con, night_id, **fields)
    finally:
        con.close()


def _child(client, parent_id: str, name: str, tags: dict[str, str] | None = None) -> str:
    exp = client.get_run(parent_id).info.experiment_id
    return client.create_run(exp, run_name=name, tags={"mlflow.parentRunId": parent_id, "kind": name.split()[0],
                                                       **(tags or {})}).info.run_id


@task(**IO_RETRY)
def retrain_decision(settings: Settings, data_through: pd.Timestamp, mode: str) -> tuple[bool, str]:
    """Train when asked, when there is no champion, when the champion's data is older than the
    cadence, or when last week's forecasts did worse than seasonal naive by the configured factor."""
    import mlflow

    n = settings.nightly
    if mode == "always":
        return True, "retrain requested"
    if mode == "never":
        return False, "retraining disabled for this run"
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    name = settings.forecast.registered_model
    try:
        champ = client.get_model_version_by_alias(name, "champion")
    except mlflow.exceptions.MlflowException as exc:  # only "no such model / alias"; other errors are retried
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return True, "no champion model yet"
        raise
    # the cadence counts from the newest training, promoted or not: a challenger that lost still
    # counts as a retrain, or every night after the cadence would train again
    versions = client.search_model_versions(f"name = '{name}'")
    ends = [pd.Timestamp(v.tags["data_end"]) for v in versions if v.tags.get("data_end")]
    if not ends:
        return True, f"no registered version of {name} has a data_end tag"
    end = max(e.tz_convert("UTC") if e.tzinfo else e.tz_localize("UTC") for e in ends)
    age_days = (data_through - end) / pd.Timedelta(days=1)
    if age_days >= n.retrain_every_days:
        return True, (f"the newest training used data to {end:%Y-%m-%d %H:%M}, {age_days:.1f} days before tonight's "
                      f"(cadence {n.retrain_every_days:g} days)")
    con = open_warehouse(settings, "nightly", read_only=True)
    try:
        err = live_errors(con, (data_through - pd.Timedelta(days=7)).to_pydatetime(), data_through.to_pydatetime(),
                          24, settings.forecast.min_coverage, model_version=str(champ.version))
    finally:
        con.close()
    pts = int(err["n"].sum()) if len(err) else 0
    if pts >= n.live_check_min_points:
        rel = float((err["mae"] * err["n"]).sum() / max((err["mae_snaive"] * err["n"]).sum(), 1e-9))
        if rel > n.retrain_if_relative_mae_above:
            return True, (f"last week the champion v{champ.version}'s forecasts had {rel:.2f}x the seasonal-naive MAE "
                          f"on {pts} hours (limit {n.retrain_if_relative_mae_above:g})")
        return False, (f"newest training {age_days:.1f} days old; last week champion v{champ.version} MAE "
                       f"{rel:.2f}x seasonal naive on {pts} hours")
    return False, (f"newest training {age_days:.1f} days old; {pts} scored hours of champion v{champ.version} "
                   f"last week (need {n.live_check_min_points} to judge)")


def summary_markdown(night: dict[str, Any], result: dict[str, Any] | None) -> str:
    """What a pricing analyst reads first: the headline, what changed and why, last week's check."""
    from pricing.review import largest_moves

    lines = [f"# Night {night['started_at']:%Y-%m-%d %H:%M} UTC: **{night['status']}**", "",
             f"**{headline(night, result)}**", ""]
    if night.get("failed_step"):
        reason = str(night.get("reason") or "").splitlines() or [""]
        lines += [f"Failed at **{night['failed_step']}**: {reason[0]}", ""] + [f"- {x}" for x in reason[1:]]
        live = night.get("sheet_version")
        lines += ["", "Nothing was published; " + (f"sheet v{live} stays live." if live else "no sheet is live yet.")
                  + " The full trace is `traceback.txt` in this run.", ""]
    lines += [
        f"- data through: {night.get('data_through')}",
        f"- ingest: {night.get('files_ingested', 0)} file(s), {night.get('rows_loaded', 0):,} rows loaded",
        f"- training: {'yes' if night.get('trained') else 'no'} ({night.get('train_reason')})",
        f"- forecast: {night.get('forecast_id')}",
        f"- live sheet: " + (f"v{night['sheet_version']}" if night.get("sheet_version") is not None else "none yet"),
    ]
    if result:
        m = result.get("metrics") or {}
        lines += ["", f"## Pricing: {result.get('status')}" + (f" ({result.get('reason')})" if result.get("reason") else ""), ""]
        if m:
            prods = sorted(k.split(".", 2)[2] for k in m if k.startswith("items.offered."))
            lines += ["| product | items | GPU-hours offered | expected revenue (USD) |", "|---|---:|---:|---:|"]
            lines += [f"| {pr} | {m.get(f'items.offered.{pr}', 0):,.0f} | {m.get(f'gpu_hours.offered.{pr}', 0):,.0f} | "
                      f"{m.get(f'revenue.expected.{pr}', 0):,.0f} |" for pr in prods]
            lines += [f"| **all** | {m.get('items.offered', 0):,.0f} | {m.get('gpu_hours.offered', 0):,.0f} | "
                      f"{m.get('revenue.expected', 0):,.0f} |", "",
                      f"- withdrawn items {m.get('items.withdrawn', 0):.0f}, pools held {m.get('pools.held', 0):.0f}, "
                      f"mean discount vs reference {m.get('discount.mean', 0):.1%}",
                      f"- diff vs last sheet: {m.get('diff.added', 0):.0f} added, {m.get('diff.removed', 0):.0f} removed, "
                      f"{m.get('diff.changed', 0):.0f} moved past the threshold (against the same block or, for a "
                      "new block, the nearest old one, as the daily cap judges them)"]
            g = {k.split(".", 1)[1]: v for k, v in m.items() if k.startswith("guardrail.")}
            if g:
                lines += ["- guardrails, items where each bound the final price (an optimum on the ceiling counts): "
                          + ", ".join(f"{k} {v:.0f}" for k, v in sorted(g.items()))]
        ov = result.get("overrides")
        if isinstance(ov, pd.DataFrame) and len(ov):
            lines += ["", "## Overrides (what each one changed)", "",
                      "| # | pool | product | action | reason | items changed | vs optimizer | vs last sheet | past daily cap |",
                      "|---:|---|---|---|---|---:|---:|---:|---:|"]
            rng = lambda a, b: "-" if pd.isna(a) else (f"{a:+.1%}" if abs(a - b) < 1e-9 else f"{a:+.1%} .. {b:+.1%}")  # noqa: E731
            lines += [f"| {r.override} | {r.pool} | {r.product} | {r.action} | {r.reason} | {r.items_changed} | "
                      f"{rng(r.change_min, r.change_max)} | {rng(r.vs_last_min, r.vs_last_max)} | "
                      f"{r.past_daily_cap or '-'} |" for r in ov.itertuples(index=False)]
        findings = result.get("findings")
        if isinstance(findings, pd.DataFrame) and len(findings):
            from pricing.findings import explain

            lines += ["", "## Pools", "", "| pool | GPU (telemetry) | class | outcome | detail |", "|---|---|---|---|---|"]
            lines += [f"| {r.pool} | {r.gpu_model} | {r.gpu_class if isinstance(r.gpu_class, str) else '-'} | {r.cause}"
                      + (f" ({r.product})" if isinstance(r.product, str) else "") + f" | {r.detail} |"
                      for r in findings.itertuples(index=False)]
            blocked = explain(findings)
            if blocked:
                lines += ["", "What stops a sale, and how to fix it:", ""] + [f"- {x}" for x in blocked]
        for w in result.get("warnings") or []:
            lines += ["", f"**Warning:** {w}"]
        held = result.get("held_pools") or {}
        if held:
            lines += ["", "## Held pools (kept their last prices)", ""] + [f"- {p}: {r}" for p, r in sorted(held.items())]
        diff = result.get("diff")
        if isinstance(diff, pd.DataFrame) and len(diff) and "change" in diff:
            top = largest_moves(diff, 10)
            lines += ["", "## Largest price moves (vs the last sheet; one per pool and product)", "",
                      "| pool | product | start (UTC) | old | new | change | why |", "|---|---|---|---:|---:|---:|---|"]
            same = lambda r: pd.isna(getattr(r, "old_start", None)) or pd.Timestamp(r.old_start) == pd.Timestamp(r.start)  # noqa: E731
            lines += [f"| {r.pool} | {r.product} | {pd.Timestamp(r.start):%Y-%m-%d %H:%M} | {r.old_price:.4f}"
                      + ("" if same(r) else f" (block of {pd.Timestamp(r.old_start):%m-%d %H:%M})")
                      + f" | {r.new_price:.4f} | {r.change:+.1%} | {r.reasons} |" for r in top.itertuples()]
    live = night.get("live") or {}
    if live:
        lines += ["", "## Last week, live (promises against what happened)", ""]
        if live.get("live.forecast_hours"):
            lines += [f"- forecast MAE over the first 24 h: {live['live.forecast_mae']:.2f} GPUs; persistence "
                      f"{live['live.persistence_mae']:.2f}, seasonal naive {live['live.snaive_mae']:.2f} "
                      f"({live['live.forecast_hours']:,.0f} pool-hours)"]
        if live.get("live.spot_blocks_ended"):
            lines += [f"- spot: {live['live.spot_blocks_ended']:,.0f} blocks ended; published interruption risk "
                      f"{live['live.spot_risk_published']:.1%} on average, realized {live['live.spot_interrupted']:.1%}"]
        if live.get("live.reserved_leases_ended"):
            lines += [f"- reserved: {live['live.reserved_leases_ended']:,.0f} lease(s) ended; "
                      f"{live['live.reserved_kept']:.1%} kept at every sample "
                      f"({live['live.reserved_gpu_hours_kept']:.1%} of promised GPU-hours)"]
        if not (live.get("live.forecast_hours") or live.get("live.spot_blocks_ended") or live.get("live.reserved_leases_ended")):
            lines += ["- nothing to judge yet (no forecast or offer of the last week has been observed)"]
    lines += ["", "Charts: `nights.png` here (offers and expected revenue night over night). More in the nested runs: "
              "`price` (sheet/: the sheet, offered.csv, every candidate item, withdrawn items, diff; charts/: spot and "
              "reserved prices per pool; overrides/), `forecast` (fan_charts/: every pool with an offer or a price "
              "move), the training run when it trained (backtest/, fan_charts/)."]
    return "\n".join(lines) + "\n"


@flow(name="nightly", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))  # per-pool tasks in threads
def nightly(settings: Settings | None = None, paths: list[str] | None = None, calendar: list[str] | None = None,
            retrain: str = "auto", as_of: datetime | None = None, replay: bool | None = None) -> dict[str, Any]:
    """One night. `paths`/`calendar` default to [nightly] inbox/calendar; retrain: auto | always | never."""
    from mlflow.tracking import MlflowClient

    settings = settings or load_settings()
    n = settings.nightly
    logger = get_run_logger()
    if retrain not in ("auto", "always", "never"):
        raise ValueError(f"retrain must be auto, always or never, not {retrain!r}")
    try:
        from prefect.runtime import flow_run

        night_id = str(flow_run.id or uuid.uuid4())
    except Exception:  # noqa: BLE001
        night_id = str(uuid.uuid4())
    started = _utc_now()
    client = MlflowClient(settings.mlflow_tracking_uri)
    exp_id = ensure_experiment(settings, n.experiment)
    parent = client.create_run(exp_id, run_name=f"night {started:%Y-%m-%d %H:%M}",
                               tags={"kind": "nightly", "night_id": night_id}).info.run_id
    night: dict[str, Any] = {"started_at": started, "status": "running", "mlflow_run_id": parent}
    step, result, run = "ingest", None, None
    try:
        _record(settings, night_id, **night)
        # ---- ingest -------------------------------------------------------------------------
        run = _child(client, parent, "ingest")
        files = paths if paths is not None else n.inbox
        ing = ingest_telemetry(files, n.source, settings=settings) if files else {"totals": {}, "by_status": {}, "files": []}
        cal_files = calendar if calendar is not None else n.calendar
        cal = ingest_calendar(cal_files, settings=settings) if cal_files else None
        t = ing["totals"]
        night.update(files_ingested=len(ing["files"]), rows_loaded=int(t.get("rows_loaded", 0)))
        for k, v in t.items():
            client.log_metric(run, f"rows.{k.removeprefix('rows_')}", float(v))
        client.log_metric(run, "files", float(len(ing["files"])))
        client.set_tag(run, "by_status", str(ing["by_status"]))
        if cal is not None:
            client.set_tag(run, "calendar", str({k: v for k, v in cal.items() if k != "files"})[:5000])
        client.set_terminated(run, "FINISHED")
        run = None
        failed = [f for f in ing["files"] if f.get("status") == "failed"]
        try:
            df, _ = load_inputs(settings)
        except ValueError as exc:  # an empty warehouse: say why the files gave nothing
            if "pool_hourly is empty" not in str(exc):
                raise
            raise RuntimeError(_no_telemetry(failed, files, n.source, exc)) from None
        data_through = df.loc[df["y"].notna(), "ds"].max()
        if pd.isna(data_through):
            raise RuntimeError("no usable telemetry in the warehouse: nothing to forecast")
        night["data_through"] = data_through.to_pydatetime()
        client.set_tag(parent, "data_start", str(df["ds"].min()))
        client.set_tag(parent, "data_end", str(data_through))

        # ---- train (when due) ---------------------------------------------------------------
        step = "train"
        do_train, why = retrain_decision(settings, data_through, retrain)
        night.update(trained=do_train, train_reason=why)
        logger.info("training: %s (%s)", do_train, why)
        if do_train:
            tr = train_forecaster(settings, parent_run_id=parent)
            client.set_tag(tr["run_id"], "train_reason", why)
        else:
            client.set_terminated(_child(client, parent, "train (skipped)", {"train_reason": why}), "FINISHED")

        # ---- forecast -----------------------------------------------------------------------
        step = "forecast"
        run = _child(client, parent, "forecast")
        fc = forecast(settings)
        night["forecast_id"] = fc["forecast_id"]
        client.log_param(run, "forecast_id", fc["forecast_id"])
        client.log_param(run, "model_version", fc["model_version"])
        client.log_metric(run, "hourly_rows", float(fc["hourly_rows"]))
        client.log_metric(run, "pools_without_forecast", float(len(fc["pools_without_forecast"])))
        client.set_terminated(run, "FINISHED")
        run = None

        # ---- price and publish --------------------------------------------------------------
        step = "price"
        replaying = n.replay if replay is None else replay
        price_at = (data_through + pd.Timedelta(hours=1)).to_pydatetime() if replaying else (as_of or _utc_now())
        result = price(settings, as_of=price_at, parent_run_id=parent)
    except BaseException as exc:
        _record_failure(settings, client, logger, night_id, night, parent, run, step, exc, result)
        raise
    # ---- review: the sheet (if any) is live now; nothing here can turn the night into a failure --
    night.update(status=result["status"], sheet_version=result.get("version"), reason=result.get("reason"),
                 finished_at=_utc_now())
    warnings = list(result.get("warnings", []))
    live: dict[str, float] = {}
    try:
        live = live_week(settings, data_through)[0]
    except Exception as exc:  # noqa: BLE001 - last week's check must not fail tonight
        warnings.append(f"last week's live check: {type(exc).__name__}: {exc}")
    night["live"] = live
    for what, act in (
        ("nightly_runs", lambda: _record(settings, night_id, **{k: v for k, v in night.items()
                                                               if k not in ("started_at", "live")})),
        ("charts", lambda: warnings.extend(log_review_charts(client, parent, settings, df, night, result))),
        ("tags", lambda: [client.set_tag(parent, k, v) for k, v in (
            ("status", result["status"]), ("sheet_version", str(result.get("version"))))]),
        ("parent run", lambda: record_parent(client, parent, headline(night, result),
                                             {**_ingest_metrics(night),
                                              **(result.get("metrics") or kept_sheet_metrics(settings, result.get("version"))),
                                              **live},
                                             night_params(settings, retrain))),
        ("summary.md", lambda: _summary(client, parent, night, result)),
    ):
        try:
            act()
        except Exception as exc:  # noqa: BLE001
            warnings.append(f"{what}: {type(exc).__name__}: {exc}")
            logger.error("night %s: %s not recorded: %s", night_id, what, exc)
    try:
        client.set_terminated(parent, "FINISHED")
    except Exception as exc:  # noqa: BLE001
        warnings.append(f"MLflow parent run not closed: {exc}")
    logger.info("night %s: %s, sheet v%s", night_id, result["status"], result.get("version"))
    return {"night_id": night_id, "status": result["status"], "sheet_version": result.get("version"),
            "published": result["status"] == "published", "trained": night.get("trained"),
            "train_reason": night.get("train_reason"), "forecast_id": night.get("forecast_id"),
            "mlflow_run_id": parent, "price": result, "ingest": ing, "warnings": warnings}


def _ingest_metrics(night: dict[str, Any]) -> dict[str, float]:
    return {"ingest.files": float(night.get("files_ingested") or 0), "ingest.rows_loaded": float(night.get("rows_loaded") or 0),
            "trained": float(bool(night.get("trained")))}


def _no_telemetry(failed: list[dict[str, Any]], files: list[str], source: str, exc: Exception) -> str:
    """Why a night has nothing to forecast, in a few lines (the failed files' own errors first)."""
    if failed:
        head = f"no telemetry could be ingested: {len(failed)} file(s) failed as --source {source!r}"
        return "\n".join([head] + [f"{Path(f['path']).name}: {f.get('error')}" for f in failed[:5]]
                         + (["check --source (canonical, helios, philly, alibaba-genai, alibaba-spot)"]))
    if not files:
        return f"no telemetry in the warehouse and no files given (set [nightly] inbox or pass PATHS): {exc}"
    return f"no usable telemetry in the warehouse after ingest: {exc}"


def _record_failure(settings: Settings, client, logger, night_id: str, night: dict[str, Any], parent: str,
                    child: str | None, step: str, exc: BaseException, result: dict[str, Any] | None) -> None:
    """Say why in every place a reviewer looks; each one on its own, so one broken store hides nothing."""
    import traceback

    from pipelines.pricing_flow import NothingToSell

    plain = type(exc) is RuntimeError or isinstance(exc, NothingToSell)  # our own explanations need no type name
    reason = (str(exc) if plain else f"{type(exc).__name__}: {exc}")[:4000]
    trace = "".join(traceback.format_exception(exc))
    live = _live_version(settings)
    night.update(status="failed", failed_step=step, reason=reason, finished_at=_utc_now(), sheet_version=live)
    actions = [
        ("child run", lambda: child and client.set_terminated(child, "FAILED")),
        ("nightly_runs", lambda: _record(settings, night_id, **night)),
        ("tags", lambda: [client.set_tag(parent, k, v) for k, v in
                          (("status", "failed"), ("failed_step", step), ("reason", reason))]),
        ("summary.md", lambda: _summary(client, parent, night, result)),
        ("parent run", lambda: record_parent(client, parent, headline(night, result), _ingest_metrics(night), {})),
        ("traceback.txt", lambda: _text_artifact(client, parent, "traceback.txt", trace)),
        ("parent run", lambda: client.set_terminated(parent, "FAILED")),
    ]
    for what, act in actions:
        try:
            act()
        except Exception as inner:  # noqa: BLE001 - recording must not hide the original failure
            logger.error("night %s: could not record the failure in %s: %s", night_id, what, inner)
    logger.error("night %s failed at %s: %s; sheet v%s stays live", night_id, step, reason, live)



def nightly_deployment(settings: Settings, cron: str | None = None, timezone_name: str | None = None):
    """The nightly flow as a Prefect deployment on a cron (what `idlecap schedule` serves)."""
    from prefect.schedules import Cron

    n = settings.nightly
    return nightly.to_deployment(
        name=n.deployment, schedules=[Cron(cron or n.cron, timezone=timezone_name or n.timezone)],
        description="ingest -> retrain if due -> forecast -> price -> publish", tags=["idlecap"],
        concurrency_limit=1,  # one writer: two nights at once would contend for the DuckDB file
    )


def _live_version(settings: Settings) -> int | None:
    from pricing.sheet import latest_sheet_path

    p = latest_sheet_path(settings.sheets_dir)
    return int(p.stem.rsplit("-", 1)[1]) if p else None


def _text_artifact(client, run_id: str, name: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text)
        client.log_artifact(run_id, str(path))


def _summary(client, parent: str, night: dict[str, Any], result: dict[str, Any] | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "summary.md"
        path.write_text(summary_markdown(night, result))
        client.log_artifact(parent, str(path))

