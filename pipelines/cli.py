"""The `idlecap` command line: thin wrappers that call the flows and print readable tables."""
from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.settings import Settings, apply_process_env, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
calendar_app = typer.Typer(no_args_is_help=True, help="Training-cycle calendar (planned internal runs).")
app.add_typer(calendar_app, name="calendar")
sheet_app = typer.Typer(no_args_is_help=True, help="Published price sheets: show, diff, history.")
app.add_typer(sheet_app, name="sheet")
console = Console()
if not console.is_terminal:  # piped or logged: don't squeeze tables into 80 columns
    console = Console(width=160)

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data"


def pd_timestamp(t: Any):
    import pandas as pd

    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _settings(config: Optional[Path]) -> Settings:
    from pydantic import ValidationError

    try:
        s = load_settings(config)
    except (ValidationError, ValueError, FileNotFoundError) as exc:  # a bad setting: say which, no traceback
        errors = exc.errors() if isinstance(exc, ValidationError) else None
        lines = [f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in errors] if errors else [str(exc)]
        console.print("[red]invalid settings[/red]:", highlight=False)
        for line in lines:
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)
    apply_process_env(s)
    return s


def _open(s: Settings, purpose: str, read_only: bool = False):
    """The warehouse, or one line (not a lock traceback) when another process holds it too long."""
    from pipelines.warehouse_conn import open_warehouse
    from warehouse.db import WarehouseBusy

    def waiting(message: str) -> None:
        console.print(f"[yellow]{escape(message)}[/yellow]; waiting up to {s.warehouse.busy_wait_s:g} s "
                      "(\\[warehouse] busy_wait_s)", highlight=False)

    try:
        return open_warehouse(s, purpose, read_only=read_only, on_wait=waiting)
    except WarehouseBusy as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(code=75) from None


ConfigOpt = typer.Option(None, "--config", "-c", help="settings TOML (default ./idlecap.toml if present)")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".")
    if isinstance(v, int):
        return f"{v:,}"
    if hasattr(v, "strftime"):
        try:
            return v.strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return str(v)
    return str(v)


def print_frame(df, title: str, max_rows: int = 60) -> None:
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in df.columns:
        t.add_column(str(c), justify="right" if df[c].dtype.kind in "iuf" else "left")
    for row in df.head(max_rows).itertuples(index=False):
        t.add_row(*[escape(_fmt(v.item() if hasattr(v, "item") else v)) for v in row])  # cells are data, not markup
    console.print(t)
    if len(df) > max_rows:
        console.print(f"[dim]... {len(df) - max_rows} more row(s)[/dim]")


def _run_with_progress(label: str, fn, *args, **kwargs):
    """Run a flow with a rich progress bar fed by pipelines.progress events."""
    from pipelines.progress import reporting

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"), console=console, transient=False,
    ) as progress:
        bar = progress.add_task(label, total=None, last="")

        def on_event(event: str, payload: Any) -> None:
            if event == "files":
                progress.update(bar, total=payload)
            elif event == "file":
                progress.update(bar, advance=1, last=f"{Path(payload.path).name}: {payload.status}")
            elif event == "backtest":
                done, total, name = payload
                progress.update(bar, total=total, completed=done, last=f"fitted {name}")
            elif event == "refresh":
                done, total = payload
                progress.update(bar, total=total, completed=done, last=f"slice {done}/{total}")
            elif event == "price_backtest":
                done, total = payload
                progress.update(bar, total=total, completed=done, last=f"origin {done}/{total} priced")

        with reporting(on_event):
            return fn(*args, **kwargs)


def _ingest_table(results: list[dict], title: str) -> None:
    import pandas as pd

    if not results:
        console.print("[yellow]no files matched[/yellow]")
        return
    df = pd.DataFrame(results)
    df["file"] = df["path"].map(lambda p: Path(p).name)
    cols = {"file": "file", "status": "status", "rows_in": "in", "rows_loaded": "loaded",
            "rows_quarantined": "quarantined", "rows_duplicate": "duplicate", "rows_replaced": "replaced"}
    print_frame(df[list(cols)].rename(columns=cols), title, max_rows=25)
    for r in results:
        if r["error"]:
            console.print(f"[red]failed[/red] {r['path']}: {r['error']}")
        if r.get("reasons"):
            reasons = ", ".join(f"{k}={v}" for k, v in r["reasons"].items())
            console.print(f"[yellow]quarantined[/yellow] {Path(r['path']).name}: {reasons}")
        if r.get("note") and r["status"] == "loaded":
            console.print(f"[cyan]note[/cyan] {Path(r['path']).name}: {r['note']}")


@app.command()
def ingest(
    paths: list[str] = typer.Argument(..., help="files, directories or glob patterns"),
    source: str = typer.Option("canonical", "--source", "-s",
                               help="canonical | helios | philly | alibaba-genai | alibaba-spot"),
    force: bool = typer.Option(False, help="re-read files already loaded (rows are still de-duplicated)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Validate and load telemetry files into the warehouse, then refresh pool_hourly."""
    from warehouse.sources import SOURCES

    if source not in SOURCES:
        raise typer.BadParameter(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}", param_hint="--source")
    s = _settings(config)
    from pipelines.ingest_flow import ingest_telemetry

    out = _run_with_progress("ingest", ingest_telemetry, paths=list(paths), source=source, force=force, settings=s)
    _ingest_table(out["files"], f"ingest ({source})")
    t = out["totals"]
    console.print(
        f"rows in {t['rows_in']:,} = loaded {t['rows_loaded']:,} + quarantined {t['rows_quarantined']:,} "
        f"+ duplicate {t['rows_duplicate']:,}; replaced {t['rows_replaced']:,} stored samples; "
        f"pool_hourly: {out['pool_hourly']['hours_refreshed']:,} pool-hours refreshed"
    )
    if out["by_status"].get("failed"):
        raise typer.Exit(code=2)


@calendar_app.command("ingest")
def calendar_ingest(
    paths: list[str] = typer.Argument(..., help="plan files (CSV/Parquet)"),
    force: bool = typer.Option(False),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Load planned internal runs (each row one version of a run's plan, with known_at)."""
    s = _settings(config)
    from pipelines.ingest_flow import ingest_calendar

    out = _run_with_progress("calendar", ingest_calendar, paths=list(paths), force=force, settings=s)
    _ingest_table(out["files"], "calendar")
    if any(r["status"] == "failed" for r in out["files"]):
        raise typer.Exit(code=2)


@calendar_app.command("show")
def calendar_show(
    as_of: Optional[datetime] = typer.Option(None, help="show the plan as known at this UTC time (default: newest)"),
    pool: Optional[list[str]] = typer.Option(None),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """The plan as known at a point in time (what a backtest at that origin may see)."""
    from warehouse.calendar import current_plan, plan_as_of

    s = _settings(config)
    con = _open(s, "calendar show", read_only=True)
    if as_of is None:
        df = current_plan(con, pool)
    else:
        df = plan_as_of(con, as_of if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc), pool)
    print_frame(df, f"plan as of {as_of or 'now'}")


@app.command()
def refresh(
    rebuild: bool = typer.Option(False, help="recompute every hour instead of only the changed ones"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Refresh pool_hourly for the hours whose telemetry changed."""
    from pipelines.progress import report
    from warehouse import pool_hourly

    s = _settings(config)
    con = _open(s, "refresh")
    if rebuild:
        r = pool_hourly.rebuild(con, s.ingest.idle_util_threshold, s.warehouse.refresh_slice_hours)
    else:
        r = _run_with_progress("refresh", pool_hourly.refresh, con, s.ingest.idle_util_threshold,
                               s.warehouse.refresh_slice_hours,
                               on_slice=lambda done, total: report("refresh", (done, total)))
    console.print(f"{r.hours_refreshed:,} pool-hours refreshed, {r.rows_written:,} rows written")


@app.command()
def status(config: Optional[Path] = ConfigOpt) -> None:
    """Per pool: rows, nodes, span, hours present and missing, coverage; ingest and quarantine totals."""
    from warehouse import status as st

    from pipelines.unrecorded_nights import read as unrecorded

    s = _settings(config)
    early = unrecorded(s)
    if not Path(s.duckdb_path).exists():
        if len(early):
            _nights_table(early)
        console.print(f"[yellow]no warehouse at {s.duckdb_path} yet: run `idlecap ingest` first[/yellow]")
        raise typer.Exit(code=1)
    con = _open(s, "status", read_only=True)
    print_frame(st.pool_status(con), f"pools ({s.duckdb_path})")
    print_frame(st.ingest_status(con), "ingest log")
    q = st.quarantine_status(con)
    if len(q):
        print_frame(q, "quarantine (see `idlecap quarantine` for rows)")
    f = st.failed_files(con)
    if len(f):
        print_frame(f, "failed / aborted files")
    from warehouse.nightly import last_nights

    has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'nightly_runs'").fetchone()[0]
    nights = last_nights(con, 10) if has else None  # a warehouse from before the nightly flow (read-only: not migrated)
    findings = _pricing_findings(con, s)
    con.close()
    import pandas as pd

    nights = pd.DataFrame() if nights is None else nights
    if len(early):  # nights that failed before they could record themselves (Prefect start, lock)
        from pipelines.unrecorded_nights import merge

        nights = merge(nights, early)
    if len(nights):
        _nights_table(nights)
    else:
        console.print("[dim]no nightly run yet (`idlecap nightly`, or `idlecap schedule` to run it every night)[/dim]")
    if findings is not None and len(findings):
        print_frame(findings, f"pricing per pool ({findings.attrs.get('caption', 'before any pricing pass')}; "
                              "`fix` says how to sell what is not sold)", 100)
    _live_sheet_line(s)


def _nights_table(nights) -> None:
    import pandas as pd

    nights = nights.assign(started_at=pd.to_datetime(nights["started_at"], utc=True),
                           finished_at=pd.to_datetime(nights["finished_at"], utc=True))
    nights = nights.sort_values("started_at", ascending=False).head(10)
    nights["took"] = (nights["finished_at"] - nights["started_at"]).map(
        lambda d: "-" if pd_isna(d) else f"{d.total_seconds():.0f} s")
    cols = ["started_at", "status", "failed_step", "reason", "trained", "sheet_version", "data_through",
            "files_ingested", "rows_loaded", "took"]
    n = nights.reindex(columns=cols).copy()
    n["reason"] = n["reason"].map(lambda r: "-" if r is None or pd_isna(r) else str(r)[:70])
    print_frame(n, "last nightly runs (newest first)")


def _pricing_findings(con, s: Settings):
    """The newest pricing pass's findings; before any pass, how each pool's GPU name resolves."""
    import pandas as pd

    from pricing.findings import FINDING_COLUMNS

    has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'pricing_findings'").fetchone()[0]
    f = pd.DataFrame(columns=FINDING_COLUMNS)
    if has:
        from warehouse.sheets import latest_findings

        f = latest_findings(con)
    caption = None
    if len(f):
        out = f[["pool", "gpu_model", "gpu_class", "cause", "product", "detail", "action"]].copy()
        caption = f"pricing pass of {pd.Timestamp(f['run_at'].iloc[0]):%Y-%m-%d %H:%M} UTC"
        last = con.execute("SELECT run_at, status, reason FROM pricing_runs ORDER BY run_at DESC LIMIT 1").fetchall()
        if last and pd.Timestamp(last[0][0]) > pd.Timestamp(f["run_at"].iloc[0]) + pd.Timedelta(seconds=30):
            caption += (f"; the newest pricing run, {pd.Timestamp(last[0][0]):%Y-%m-%d %H:%M}, was "
                        f"{last[0][1]}: {str(last[0][2] or '').splitlines()[0][:80]}")
    else:  # no pricing pass yet: at least the GPU names the catalogue cannot place
        pools = con.execute("SELECT pool, gpu_model FROM pools ORDER BY pool").df()
        if pools.empty:
            return None
        r = s.pricing.catalog().resolve(pools["gpu_model"], s.pricing.gpu_aliases).set_index("gpu_model")
        pools["gpu_class"] = pools["gpu_model"].map(r["gpu_class"])
        pools["cause"] = pools["gpu_class"].map(lambda c: "resolved" if isinstance(c, str) else "unknown_gpu")
        pools["product"] = None
        pools["detail"] = [f"{m!r} -> {c}" if isinstance(c, str) else f"GPU name {m!r} is not in the GPU catalogue"
                           for m, c in zip(pools["gpu_model"], pools["gpu_class"])]
        pools["action"] = [None if isinstance(c, str) else f'[pricing.gpu_aliases] "{m}" = "<class>" (`idlecap gpus`)'
                           for m, c in zip(pools["gpu_model"], pools["gpu_class"])]
        out = pools
    out = out.rename(columns={"gpu_model": "gpu (telemetry)", "gpu_class": "class", "action": "fix"})
    out["product"] = out["product"].map(lambda v: v if isinstance(v, str) else "-")
    out["fix"] = out["fix"].map(lambda v: v if isinstance(v, str) else "-")
    if caption:
        out.attrs["caption"] = caption
    return out


@app.command()
def gpus(
    names: Optional[list[str]] = typer.Argument(None, help="GPU names to resolve, as telemetry spells them "
                                                "(e.g. 'NVIDIA A100-SXM4-80GB'); default: list the catalogue"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """The GPU catalogue (classes, the cloud GPU each is priced against, performance factor, cost floor),
    or how given names resolve. Map a name it does not know with \\[pricing.gpu_aliases] "name" = "class"."""
    import pandas as pd

    from pricing.costs import cost_table

    s = _settings(config)
    p = s.pricing
    cat = p.catalog()
    if names:
        r = cat.resolve(names, p.gpu_aliases)
        c = cost_table(r, cat, p.cost_overrides(), p.usd_per_kwh, p.pue)
        out = r.merge(c[["gpu_model", "floor", "cost_source"]], on="gpu_model")
        out["reference_classes"] = out["reference_classes"].map(lambda v: "|".join(v) or "-")
        print_frame(out, "how these GPU names resolve (match: configured = \\[pricing.gpu_aliases], alias = catalogue)")
        if r["gpu_class"].isna().any():
            raise typer.Exit(code=1)
        return
    cl = cat.classes.reset_index(drop=True)
    r = pd.DataFrame({"gpu_model": cl["gpu_class"], "gpu_class": cl["gpu_class"]})
    c = cost_table(r, cat, p.cost_overrides(), p.usd_per_kwh, p.pue)
    t = cl[["gpu_class", "vendor", "architecture", "memory_gb", "form_factor", "reference_classes",
            "performance_factor"]].assign(floor=c["floor"].to_numpy(), cost=c["cost_source"].to_numpy())
    print_frame(t, f"GPU catalogue ({p.gpu_catalog.name}; aliases {p.gpu_alias_file.name}, {len(cat.aliases)} spellings)", 200)


@app.command()
def quarantine(
    reason: Optional[str] = typer.Option(None),
    limit: int = typer.Option(20),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Show quarantined rows: file, row, reason, detail and the raw row."""

    s = _settings(config)
    con = _open(s, "quarantine", read_only=True)
    df = con.execute(
        "SELECT ingest_id, source_file, row_number, reason, detail, raw FROM quarantine "
        "WHERE ? IS NULL OR reason = ? ORDER BY ingest_id, row_number LIMIT ?",
        [reason, reason, limit],
    ).df()
    print_frame(df, "quarantined rows")


@app.command()
def generate(
    out_dir: Path = typer.Argument(..., help="where to write telemetry/, calendar.csv, fleet.csv"),
    pools: int = typer.Option(4),
    nodes_per_pool: int = typer.Option(16),
    gpus_per_node: int = typer.Option(8),
    days: int = typer.Option(28),
    interval_s: int = typer.Option(60),
    seed: int = typer.Option(0),
    start: datetime = typer.Option(datetime(2026, 1, 5), help="first day (UTC)"),
    file_per: str = typer.Option("day", help="day | single | node-day"),
) -> None:
    """Write a deterministic synthetic fleet: canonical telemetry + a training calendar that drives it."""
    from warehouse.synthetic import FleetSpec, write_fleet

    spec = FleetSpec(pools=pools, nodes_per_pool=nodes_per_pool, gpus_per_node=gpus_per_node,
                     start=start.replace(tzinfo=timezone.utc) if start.tzinfo is None else start,
                     days=days, interval_s=interval_s, seed=seed)
    with console.status("generating fleet"):
        files = write_fleet(spec, out_dir, file_per=file_per)
    console.print(f"wrote {files.rows:,} telemetry rows in {len(files.telemetry):,} file(s) under {out_dir}; "
                  f"calendar: {files.calendar}")


_METRIC_COLS = {
    "model": "model", "n": "points", "mae": "MAE", "mae_vs_naive": "MAE/naive", "mae_vs_snaive": "MAE/snaive",
    "mase_mean": "MASE mean", "mase_median": "MASE median", "pinball": "pinball", "coverage80": "cov 80%",
    "coverage90": "cov 90%", "width80": "width 80%", "mae_event": "MAE run start/end", "mae_rest": "MAE rest",
}


def _metrics_table(overall, title: str) -> None:
    print_frame(overall[list(_METRIC_COLS)].rename(columns=_METRIC_COLS), title)


def _with_forecast_overrides(s: Settings, windows: Optional[int], horizon: Optional[int], models: Optional[str]) -> Settings:
    upd = {}
    if windows is not None:
        upd["backtest_windows"] = windows
    if horizon is not None:
        upd["backtest_horizon_hours"] = horizon
    if models is not None:
        upd["models"] = [m.strip() for m in models.split(",") if m.strip()]
    if upd:
        from pydantic import ValidationError

        from pipelines.settings import ForecastSettings

        try:
            fs = ForecastSettings.model_validate({**s.forecast.model_dump(), **upd})
        except ValidationError as exc:
            raise typer.BadParameter(exc.errors()[0]["msg"]) from None
        s = s.model_copy(update={"forecast": fs})
    return s


WindowsOpt = typer.Option(None, "--windows", help="backtest origins (default from settings)")
HorizonOpt = typer.Option(None, "--horizon", help="backtest horizon in hours (default from settings)")
ModelsOpt = typer.Option(None, "--models", help="comma-separated candidates, e.g. naive,snaive_24,mstl,lgbm")


@app.command()
def backtest(
    windows: Optional[int] = WindowsOpt,
    horizon: Optional[int] = HorizonOpt,
    models: Optional[str] = ModelsOpt,
    per_pool: bool = typer.Option(False, "--per-pool", help="also print the per-pool table"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Rolling-origin backtest of the candidate models; prints per-model metrics (nothing is registered)."""
    s = _with_forecast_overrides(_settings(config), windows, horizon, models)
    from pipelines.forecast_flow import backtest_forecasters

    out = _run_with_progress("backtest", backtest_forecasters, settings=s)
    f = s.forecast
    _metrics_table(out["overall"], f"backtest: {f.backtest_windows} origins x {f.backtest_horizon_hours} h, "
                                   f"step {f.backtest_step_hours} h ({f.backtest_window})")
    if per_pool:
        pp = out["per_pool"]
        print_frame(pp[pp["model"] == "selected"] if (pp["model"] == "selected").any() else pp, "per pool", max_rows=200)


@app.command()
def train(
    windows: Optional[int] = WindowsOpt,
    horizon: Optional[int] = HorizonOpt,
    models: Optional[str] = ModelsOpt,
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Backtest, pick a model per pool, fit, log to MLflow and register (champion only if better)."""
    s = _with_forecast_overrides(_settings(config), windows, horizon, models)
    from pipelines.forecast_flow import train_forecaster

    out = _run_with_progress("train", train_forecaster, settings=s)
    import pandas as pd

    _metrics_table(pd.DataFrame(out["overall"]), "backtest (\"selected\" = per-pool choice, chosen on earlier origins only)")
    verdict = "[green]promoted to champion[/green]" if out["promoted"] else "[yellow]not promoted[/yellow]"
    console.print(f"MLflow run {out['run_id']}: {s.forecast.registered_model} v{out['version']} {verdict} ({out['reason']})")
    console.print(f"MLflow store: {s.mlflow_tracking_uri} (browse: mlflow ui --backend-store-uri {s.mlflow_tracking_uri})")


@app.command()
def forecast(config: Optional[Path] = ConfigOpt) -> None:
    """Forecast every pool with the champion; write hourly and daily rows to the warehouse."""
    s = _settings(config)
    from pipelines.forecast_flow import forecast as forecast_flow
    from warehouse.forecasts import latest_forecast

    with console.status("forecasting"):
        try:
            out = forecast_flow(settings=s)
        except LookupError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(code=1)
    console.print(f"forecast {out['forecast_id']}: origin {out['origin']}, {out['hourly_rows']:,} hourly and "
                  f"{out['daily_rows']:,} daily rows")
    con = _open(s, "forecast", read_only=True)
    day = latest_forecast(con, "day")
    con.close()
    if len(day):
        first = day[day["ds"] == day["ds"].min()]
        print_frame(first[["unique_id", "ds", "model", "q10", "q50", "mean", "q90", "gpus_total"]],
                    "first full day: idle GPU-hours per pool (q10 = what a reserved offer can lean on)")


def _sheet_summary(items) -> None:
    """Per pool x product: items, GPUs, price range, the reference undercut, guardrails."""
    off = items[items["offered"].astype(bool)]
    if off.empty:
        console.print("[yellow]no item offered[/yellow]")
        return
    g = off.groupby(["pool", "product"], as_index=False).agg(
        items=("start", "size"), gpus_min=("gpus_offered", "min"), gpus_max=("gpus_offered", "max"),
        price_min=("price_per_gpu_hour", "min"), price_max=("price_per_gpu_hour", "max"),
        reference=("reference_price", "first"), ref_sku=("reference_sku", "first"),
        discount=("discount_vs_reference", "mean"), risk=("interruption_risk", "mean"),
        guardrails=("guardrails", lambda s: ", ".join(sorted({x.split(":")[0] for gs in s for x in gs})) or "-"),
    )
    print_frame(g, "price sheet: per pool and product (USD per GPU-hour; discount = mean share under the reference)",
                max_rows=80)
    w = items[~items["offered"].astype(bool)]
    if len(w):
        counts = w.groupby(["product", "withdraw_reason"]).size().reset_index(name="items")
        print_frame(counts, "withdrawn (not on the sheet)")


def _diff_table(diff, title: str) -> None:
    if diff is None or diff.empty:
        console.print(f"[dim]{title}: no price moved more than the threshold[/dim]")
        return
    d = diff.copy()
    d["change"] = (d["change"] * 100).round(1).astype(str) + "%"
    print_frame(d, title, max_rows=30)


@app.command()
def price(
    as_of: Optional[datetime] = typer.Option(None, "--as-of", help="price as of this UTC time (default: now); "
                                             "replays use the data's time"),
    force: bool = typer.Option(False, help="re-price even when the inputs are unchanged"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Price the newest forecast and publish a versioned sheet, or hold the last sheet and say why."""
    s = _settings(config)
    from pipelines.pricing_flow import price as price_flow

    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=timezone.utc)
    from pipelines.pricing_flow import NothingToSell

    failure = None
    with console.status("pricing"):
        try:
            out = price_flow(settings=s, as_of=as_of, force=force)
        except NothingToSell as exc:
            failure = str(exc)
    if failure is not None:
        lines = failure.splitlines()
        console.print(f"[red]failed[/red]: {escape(lines[0])}", highlight=False)
        for line in lines[1:]:
            console.print(f"  - {line}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(code=1)
    if out["status"] == "held":
        console.print(f"[yellow]held[/yellow]: the last sheet (v{out['version']}) stays in force. {escape(out['reason'])}",
                      highlight=False)
        raise typer.Exit(code=3)
    if out["status"] == "unchanged":
        console.print(f"[cyan]unchanged[/cyan]: {out['reason']}")
        return
    _sheet_summary(out["items"])
    _diff_table(out["diff"], f"changes > {s.pricing.diff_threshold:.0%} vs the previous sheet, and why")
    m = out["metrics"]
    guards = ", ".join(f"{k.split('.', 1)[1]}={int(v)}" for k, v in m.items() if k.startswith("guardrail.")) or "none"
    console.print(f"[green]published[/green] sheet v{out['version']} valid from {out['valid_from']}: "
                  f"{int(m['items.offered'])} items, {m['gpu_hours.offered']:,.0f} GPU-hours; guardrails: {guards}; "
                  f"held pools: {len(out['held_pools'])}")
    if out.get("paths"):
        console.print(f"files: {out['paths'][0]} (+ .parquet); MLflow run {out['mlflow_run_id']}")


@sheet_app.command("show")
def sheet_show(
    version: Optional[int] = typer.Argument(None, help="sheet version (default: the newest published)"),
    product: Optional[str] = typer.Option(None), pool: Optional[str] = typer.Option(None),
    limit: int = typer.Option(40),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Print a published sheet (read from its JSON file, as a customer would get it)."""
    import pandas as pd

    from pricing.sheet import items_table, latest_sheet_path, read_sheet, sheet_name

    s = _settings(config)
    path = latest_sheet_path(s.sheets_dir) if version is None else Path(s.sheets_dir) / f"{sheet_name(version)}.json"
    if path is None or not path.exists():
        console.print(f"[yellow]no published sheet{'' if version is None else f' v{version}'} in {s.sheets_dir}[/yellow]")
        raise typer.Exit(code=1)
    sheet = read_sheet(path)
    hdr = {k: v for k, v in sheet.items() if k != "items"}
    console.print(", ".join(f"[bold]{k}[/bold] {v}" for k, v in hdr.items()))
    df = items_table(sheet["items"])
    if product:
        df = df[df["product"] == product]
    if pool:
        df = df[df["pool"] == pool]
    if len(df):
        df["guardrails"] = df["guardrails"].map(lambda g: ", ".join(g) or "-")
        factor = df["reference_performance_factor"] if "reference_performance_factor" in df else 1.0
        df["undercuts"] = (df["reference_provider"] + " " + df["reference_sku"] + " " + df["reference_product"]
                           + " " + df["reference_price"].map("{:.3f}".format)
                           + pd.Series(factor, index=df.index).map(
                               lambda f: "" if f is None or pd.isna(f) or abs(f - 1) < 1e-9 else f" x {f:g}"))
        df["discount"] = (df["discount_vs_reference"] * 100).round(1).astype(str) + "%"
        cols = {"pool": "pool", "product": "product", "start": "start", "price_per_gpu_hour": "USD/GPU-h",
                "gpus_offered": "GPUs", "interruption_risk": "risk", "undercuts": "undercuts", "discount": "by",
                "floor": "floor", "guardrails": "guardrails"}
        print_frame(df[list(cols)].rename(columns=cols), f"{path.name}: {len(df)} item(s)", max_rows=limit)
    else:
        console.print("no matching items")


@sheet_app.command("diff")
def sheet_diff(
    old: Optional[int] = typer.Argument(None, help="older version (default: the one before NEW)"),
    new: Optional[int] = typer.Argument(None, help="newer version (default: the newest)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Price changes above the threshold between two sheets, each with what moved under it."""
    from pricing.diff import diff_items
    from warehouse import sheets as history

    s = _settings(config)
    con = _open(s, "sheet diff", read_only=True)
    try:
        versions = [r[0] for r in con.execute("SELECT version FROM price_sheets ORDER BY version").fetchall()]
        if len(versions) < 2 and (old is None or new is None):
            console.print("[yellow]fewer than two sheets published: nothing to compare[/yellow]")
            raise typer.Exit(code=1)
        new = new if new is not None else versions[-1]
        older = [v for v in versions if v < new]
        if old is None and not older:
            console.print(f"[yellow]v{new} is the first sheet: nothing older to compare with[/yellow]")
            raise typer.Exit(code=1)
        old = old if old is not None else max(older)
        missing = [v for v in (old, new) if v not in versions]
        if missing:
            console.print(f"[red]no sheet version(s) {missing}; published: {versions[-10:]}[/red]")
            raise typer.Exit(code=1)
        diff, counts = diff_items(history.sheet_items(con, new), history.sheet_items(con, old), s.pricing.diff_threshold)
    finally:
        con.close()
    _diff_table(diff, f"v{old} -> v{new}: changes > {s.pricing.diff_threshold:.0%}")
    console.print(", ".join(f"{k} {v}" for k, v in counts.items()))


@sheet_app.command("history")
def sheet_history(limit: int = typer.Option(20), config: Optional[Path] = ConfigOpt) -> None:
    """Published sheets, newest first, and the pricing runs that held or left them unchanged."""
    from warehouse import sheets as history

    s = _settings(config)
    if not Path(s.duckdb_path).exists():
        console.print("[yellow]no warehouse yet[/yellow]")
        raise typer.Exit(code=1)
    con = _open(s, "sheet history", read_only=True)
    print_frame(history.history(con, limit), "price sheets")
    runs = con.execute("SELECT run_at, as_of, status, version, reason FROM pricing_runs ORDER BY run_at DESC LIMIT ?",
                       [limit]).df()
    con.close()
    print_frame(runs, "pricing runs")


bookings_app = typer.Typer(no_args_is_help=True, help="Bookings taken from published sheets (demand refit input).")
app.add_typer(bookings_app, name="bookings")


@bookings_app.command("ingest")
def bookings_ingest(path: Path = typer.Argument(..., help="CSV or Parquet with booking_id, sheet_version, pool, "
                                                "product, start, gpus, price_per_gpu_hour, booked_at[, customer]"),
                    config: Optional[Path] = ConfigOpt) -> None:
    """Load bookings; bad rows are rejected with a reason, known booking_ids skipped."""
    import pandas as pd

    from warehouse.bookings import load_bookings

    s = _settings(config)
    if not path.exists():
        console.print(f"[red]{path} does not exist[/red]")
        raise typer.Exit(code=1)
    text = {"booking_id": str, "pool": str, "product": str, "customer": str}  # "007" stays "007"
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=text)
    con = _open(s, "bookings ingest")
    try:
        r = load_bookings(con, frame)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2)
    finally:
        con.close()
    console.print(f"bookings in {r.rows_in:,} = loaded {r.loaded:,} + already known {r.duplicate:,} "
                  f"+ rejected {len(r.rejected):,}")
    if len(r.rejected):
        print_frame(r.rejected, "rejected bookings (not loaded)", max_rows=30)
        raise typer.Exit(code=2)


@app.command("price-backtest")
def price_backtest(
    windows: Optional[int] = typer.Option(None, "--windows", help="origins (default pricing.backtest_windows)"),
    model: Optional[str] = typer.Option(None, "--model", help="forecaster to replay (default pricing.backtest_model)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Replay rolling-origin forecasts and score the offers: safety, yield, revenue vs a naive policy."""
    s = _settings(config)
    upd = {k: v for k, v in (("backtest_windows", windows), ("backtest_model", model)) if v is not None}
    if upd:
        s = s.model_copy(update={"pricing": s.pricing.model_copy(update=upd)})
    from pipelines.pricing_flow import SAFETY_BAR, backtest_pricing

    out = _run_with_progress("pricing backtest", backtest_pricing, settings=s)
    rep = out["report"]
    summ = rep.summary.copy()
    summ = summ[[c for c in ("policy", "term", "offers", "offered_gpu_hours", "safety", "safety_hourly", "yield",
                             "achievable", "safe_achievable", "revenue_gross", "penalties", "revenue_net",
                             "predicted_risk", "realized_risk") if c in summ]]
    print_frame(summ, f"pricing backtest: {len(rep.origins)} origins, model {s.pricing.backtest_model} "
                      "(safety = offered GPU-hours idle at every sample of the window; safety_hourly = on hourly means; "
                      "yield = offered / really idle; achievable = offered / what hindsight could promise safely)")
    sample = rep.offers["sample_level"].mean() if "sample_level" in rep.offers and len(rep.offers) else 0.0
    if sample < 1:
        console.print(f"[yellow]{1 - sample:.0%} of the windows have no sample-level minimum[/yellow] (hours refreshed "
                      "before the warehouse kept it): scored on hourly means there; `idlecap refresh --rebuild` fixes it")
    size = out.get("by_pool_size")
    if size is not None and len(size):
        print_frame(size, "reserved by pool size (GPUs)")
    curve = out.get("curve")
    if curve is not None and len(curve):
        print_frame(curve, "reserved sizing by per-lease break target (risk model refit at every origin; "
                           "early origins choose, later origins score)")
        chosen = out.get("chosen_target")
        in_force = s.pricing.reserved_break_target
        if chosen is None:
            console.print(f"[yellow]no break target meets safety {SAFETY_BAR:g} on the early origins[/yellow]; "
                          f"in force: {in_force:g}")
        else:
            later = curve[(curve["origins"] == "later") & (curve["target"] == chosen)]
            tail = (f": on the later origins safety {later['safety'].iloc[0]:.3f}, achievable "
                    f"{later['achievable'].iloc[0]:.3f}") if len(later) else ""
            console.print(f"break target chosen on the early origins (most offered with safety >= {SAFETY_BAR:g}): "
                          f"{chosen:g}{tail}; in force: {in_force:g} (\\[pricing] reserved_break_target)")
    cal = out.get("calibration")
    if cal is not None:
        print_frame(cal.summary, f"spot interruption risk on the later {len(cal.later_origins)} origins (the map was fit "
                                 f"on the earlier {len(cal.early_origins)}; reclaimed = idle below what was leased at a sample)")
        print_frame(cal.bands, "reliability by predicted band (later origins)")
        if cal.adopted:
            console.print(f"adopted and stored: the curve refitted on all {cal.calibrator.n_blocks_:,} blocks; the next "
                          "pricing pass publishes calibrated interruption_risk")
        elif not cal.calibrator.calibrated_:
            console.print(f"[yellow]only {cal.calibrator.n_blocks_} spot blocks: no calibration fitted[/yellow]")
        else:
            console.print("[yellow]not adopted[/yellow]: on the later origins the calibrated risk did not beat the raw "
                          "score (Brier and mean gap); pricing keeps publishing the raw score")
    console.print(f"MLflow run {out['mlflow_run_id']}; windows skipped for missing telemetry: {rep.skipped_windows}")


@app.command()
def demo(config: Optional[Path] = ConfigOpt) -> None:
    """The main job on the embedded defaults and the bundled sample: one night, then what to open next."""
    sample = SAMPLE_DIR / "helios_earth_sample.parquet"
    if not sample.exists():
        console.print(f"[red]bundled sample {sample} is missing[/red]")
        raise typer.Exit(code=1)
    s = _settings(config)
    from pipelines.nightly_flow import nightly as nightly_flow

    console.rule("idlecap demo: one night on the bundled Helios Earth sample (16 V100 pools, May 2020)")
    console.print("[dim]ingest -> refresh pool_hourly -> train if due (always on the first run) -> forecast -> "
                  "price as of the hour after the sample ends (a replay of that night) -> publish[/dim]")
    started = datetime.now(timezone.utc)
    try:
        out = _run_with_progress("nightly", nightly_flow, settings=s, paths=[str(sample)], retrain="auto", replay=True)
    except Exception as exc:
        _note_if_unrecorded(s, started, exc)
        console.print(f"[red]the night failed[/red]: {type(exc).__name__}: {exc} (see `idlecap status`)")
        raise typer.Exit(code=1)
    console.rule("status")
    status(config=config)
    console.rule("the night's price sheet")
    _night_report(s, out, live=False)
    console.rule("next")
    uri = s.mlflow_tracking_uri
    console.print(f"""review the night in MLflow:
  .venv/bin/mlflow ui --backend-store-uri {uri} --port 5000      # then http://127.0.0.1:5000, experiment {s.nightly.experiment!r}
serve the sheet:
  .venv/bin/idlecap api-key create --scope customer                  # prints a key once
  .venv/bin/idlecap serve --port 8000                                # then http://127.0.0.1:8000/docs
  curl -H "Authorization: Bearer <key>" http://127.0.0.1:8000/v1/price-sheet
(the sample is from 2020, so the API flags the sheet as expired: Idlecap-Sheet-Status: expired)
run it every night: .venv/bin/idlecap schedule   (cron {s.nightly.cron} {s.nightly.timezone})""", highlight=False)


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="bind address (default \\[api] host, 127.0.0.1)"),
    port: Optional[int] = typer.Option(None, help="port (default \\[api] port, 8000)"),
    workers: Optional[int] = typer.Option(None, help="uvicorn worker processes (default \\[api] workers, 1)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Serve the leasing API over the published price sheets (never opens the warehouse)."""
    import uvicorn

    s = load_settings(config)
    if config is not None:
        os.environ["IDLECAP_CONFIG"] = str(Path(config).resolve())  # each worker loads the same settings
    a = s.api
    host, port, workers = host or a.host, port or a.port, workers or a.workers
    from api.keys import KeyFileError

    try:
        keys = _key_count(a.keys_path)
    except (KeyFileError, OSError) as exc:  # one clear line, no traceback: fix the file or restore it
        console.print(f"[red]idlecap serve: cannot start: {exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)
    console.print(f"[bold]idlecap API[/bold] on http://{host}:{port} (docs /docs), sheets {s.sheets_dir}, "
                  f"{keys} active API key(s) in {a.keys_path}")
    if keys == 0:
        console.print("[yellow]no API keys yet: every /v1 request gets 401. "
                      "Create one with `idlecap api-key create --scope customer`.[/yellow]")
    uvicorn.run("pipelines.serve:app", factory=True, host=host, port=port, workers=workers, loop="uvloop",
                http="httptools", access_log=False, log_level="warning", server_header=False,
                timeout_graceful_shutdown=5)


def pd_isna(v: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(v))


def _live_sheet_line(s: Settings) -> None:
    """The sheet customers get right now (LATEST), its age and whether it is still valid."""
    from pricing.sheet import latest_sheet_path, read_sheet

    path = latest_sheet_path(s.sheets_dir)
    if path is None:
        console.print(f"[yellow]no sheet published yet in {s.sheets_dir}[/yellow]")
        return
    sh = read_sheet(path)
    now = datetime.now(timezone.utc)
    age = now - pd_timestamp(sh["generated_at"])
    until = pd_timestamp(sh["valid_until"])
    state = "[green]valid[/green]" if now < until else "[yellow]expired[/yellow]"
    console.print(f"live sheet: [bold]v{sh['version']}[/bold], generated {sh['generated_at']} ({age.total_seconds() / 3600:,.1f} h ago), "
                  f"valid {sh['valid_from']} to {sh['valid_until']} ({state}), {len(sh['items'])} items, data through {sh['data_through']}")


def sheet_table(path: Path, title: str) -> None:
    """The published sheet per pool and product: what a customer is offered, and against what."""
    import pandas as pd

    from pricing.sheet import items_table, read_sheet

    df = items_table(read_sheet(path)["items"])
    if df.empty:
        console.print("[yellow]the sheet offers nothing[/yellow]")
        return

    def rng(x: pd.Series, fmt: str) -> str:
        lo, hi = x.min(), x.max()
        return fmt.format(lo) if abs(hi - lo) < 1e-9 else f"{fmt.format(lo)}-{fmt.format(hi)}"

    rows = []
    for (pool, product), g in df.groupby(["pool", "product"], sort=True):
        first = g.iloc[0]
        factor = first.get("reference_performance_factor", 1.0)
        factor = 1.0 if factor is None or pd.isna(factor) else float(factor)
        cls = first.get("gpu_class")
        rows.append({
            "pool": pool, "gpu": first["gpu_model"] + (f" ({cls})" if isinstance(cls, str) and cls != first["gpu_model"] else ""),
            "product": product, "items": len(g),
            "price $/GPU-h": rng(g["price_per_gpu_hour"], "{:.3f}"),
            "reference": f"{first['reference_provider']} {first['reference_sku']} {first['reference_product']} "
                         f"{first['reference_price']:.3f}" + (f" x {factor:g}" if abs(factor - 1) > 1e-9 else ""),
            "discount": f"{g['discount_vs_reference'].mean():.0%}",
            "GPUs offered": rng(g["gpus_offered"], "{:.0f}"),
            "interruption risk": "-" if product != "spot" else rng(g["interruption_risk"], "{:.2f}"),
        })
    print_frame(pd.DataFrame(rows), title, max_rows=80)


def _key_count(path: Path) -> int:
    from api.keys import read_keys

    return sum(1 for k in read_keys(path).values() if k.revoked_at is None)


key_app = typer.Typer(no_args_is_help=True, help="API keys for the leasing API (stored hashed).")
app.add_typer(key_app, name="api-key")


@key_app.command("create")
def api_key_create(
    scope: str = typer.Option(..., help="customer (prices, quotes) or internal (also forecasts)"),
    name: str = typer.Option("", help="who or what the key is for"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Create a key. It is printed once: only its hash is stored."""
    from api.keys import SCOPES, create_key

    if scope not in SCOPES:
        console.print(f"[red]--scope must be one of {', '.join(SCOPES)}, not {scope!r}[/red]")
        raise typer.Exit(2)
    s = load_settings(config)
    s.ensure_dirs()
    key, rec = create_key(s.api.keys_path, scope, name)
    console.print(f"created key {rec.key_id} (scope {rec.scope}) in {s.api.keys_path}; it is shown only now:",
                  style="dim", highlight=False)
    print(key)


@key_app.command("list")
def api_key_list(config: Optional[Path] = ConfigOpt) -> None:
    """Keys by id, scope and state (never the keys themselves)."""
    import pandas as pd

    from api.keys import read_keys

    s = load_settings(config)
    rows = [k.public() for k in read_keys(s.api.keys_path).values()]
    print_frame(pd.DataFrame(rows, columns=["key_id", "name", "scope", "created_at", "revoked_at"]),
                f"API keys in {s.api.keys_path}")


@key_app.command("revoke")
def api_key_revoke(key_id: str = typer.Argument(..., help="the key's id (second part of the key)"),
                   config: Optional[Path] = ConfigOpt) -> None:
    """Revoke a key; a running API refuses it within \\[api] reload_seconds."""
    from api.keys import revoke_key

    s = load_settings(config)
    try:
        rec = revoke_key(s.api.keys_path, key_id)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1)
    console.print(f"revoked {rec.key_id} at {rec.revoked_at}")


@app.command()
def nightly(
    paths: Optional[list[str]] = typer.Argument(None, help="telemetry to ingest (default: the \\[nightly] inbox setting; none unless configured)"),
    calendar: Optional[list[str]] = typer.Option(None, "--calendar", help="plan files (default: the \\[nightly] calendar setting; none unless configured)"),
    retrain: str = typer.Option("auto", help="auto (cadence or degraded last week), always, never"),
    replay: Optional[bool] = typer.Option(None, "--replay/--no-replay",
                                          help="price as of the newest telemetry hour + 1 h (default: the \\[nightly] replay setting; off unless configured)"),
    source: Optional[str] = typer.Option(None, help="telemetry format: canonical, helios, philly, alibaba-genai, alibaba-spot (default: the \\[nightly] source setting; canonical unless configured)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Prefect's error logs and tracebacks"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """One night now: ingest -> retrain if due -> forecast -> price -> publish (exit 1 when it failed)."""
    s = _settings(config)
    if source:
        s = s.model_copy(update={"nightly": s.nightly.model_copy(update={"source": source})})
    from pipelines.nightly_flow import nightly as nightly_flow

    if not verbose:
        _quiet_prefect_errors()
    failure = None
    started = datetime.now(timezone.utc)
    try:
        out = _run_with_progress("nightly", nightly_flow, settings=s, paths=paths or None, calendar=calendar or None,
                                 retrain=retrain, replay=replay)
    except Exception as exc:  # the flow recorded it (Prefect state, MLflow, nightly_runs), unless it never started
        failure = f"{type(exc).__name__}: {exc}"
        _note_if_unrecorded(s, started, exc)
        _release_frames(exc)
    if failure is not None:
        _night_failed(s, failure, verbose, started)
        raise typer.Exit(code=1)
    _night_report(s, out)


def _quiet_prefect_errors() -> None:
    """Keep Prefect's ERROR records (engine tracebacks) off the console; the CLI says what failed and
    where the full trace is (MLflow traceback.txt, --verbose). The Prefect API still gets them."""
    import logging

    class _NoPrefectErrors(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not (record.levelno >= logging.ERROR and record.name.startswith("prefect"))

    for h in logging.getLogger().handlers:
        h.addFilter(_NoPrefectErrors())


def _recorded_since(s: Settings, started: datetime) -> dict | None:
    """The night the flow recorded after `started` (None: it never got that far, or no warehouse)."""
    from warehouse.db import connect
    from warehouse.nightly import last_nights

    if not Path(s.duckdb_path).exists():
        return None
    try:
        con = connect(s.duckdb_path, read_only=True, wait_s=0)
        try:
            n = last_nights(con, 1)
        finally:
            con.close()
    except Exception:  # noqa: BLE001 - locked, or from before nightly_runs: nothing recorded that we can see
        return None
    if not len(n) or pd_isna(n.iloc[0]["started_at"]) or n.iloc[0]["started_at"] < started - timedelta(seconds=5):
        return None
    return n.iloc[0].to_dict()


def _note_if_unrecorded(s: Settings, started: datetime, exc: BaseException) -> None:
    """A night that failed before it recorded itself still shows in `idlecap status`."""
    if _recorded_since(s, started) is None:
        from pipelines.unrecorded_nights import note

        note(s, started, exc)


def _night_failed(s: Settings, failure: str, verbose: bool, started: datetime) -> None:
    """The cause in a few lines, the live sheet, and where the full trace is."""
    night = _recorded_since(s, started)
    night = night if night and night.get("status") == "failed" else None
    reason = str(night["reason"]) if night and night.get("reason") else failure
    lines = reason.splitlines() or [failure]
    step = f" at {night['failed_step']}" if night and night.get("failed_step") else ""
    console.print(f"[red]the night failed{step}[/red]: {escape(lines[0])}", highlight=False)
    for line in lines[1:12]:
        console.print(f"  - {line}", highlight=False, markup=False, soft_wrap=True)
    if len(lines) > 12:
        console.print(f"  ... {len(lines) - 12} more line(s) in the MLflow run's summary.md", highlight=False)
    _live_sheet_line(s)
    if night is None:  # it never reached the flow's own records (MLflow, nightly_runs)
        console.print("it failed before the night could record itself (noted for `idlecap status`)"
                      + ("" if verbose else "; run again with --verbose for the trace"), highlight=False)
        return
    where = f"MLflow run {night['mlflow_run_id']} (traceback.txt, summary.md)" if night.get("mlflow_run_id") \
        else f"the FAILED run in MLflow experiment {s.nightly.experiment!r}"
    console.print(f"full trace: {where}" + ("" if verbose else ", or run again with --verbose")
                  + "; history: `idlecap status`", highlight=False)


def _release_frames(exc: BaseException) -> None:
    """Drop the locals of every frame in the exception chain.

    Prefect keeps the failed run's exception (its state) until exit; its frames hold DuckDB
    connections and types, which nanobind reports as ~100 "leaked instance" lines at exit."""
    import traceback

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


def _night_report(s: Settings, out: dict[str, Any], live: bool = True) -> None:
    from pricing.sheet import latest_sheet_path

    verdict = {"published": "[green]published[/green]", "unchanged": "[cyan]unchanged[/cyan]",
               "held": "[yellow]held[/yellow]"}.get(out["status"], out["status"])
    console.print(f"night {out['night_id']}: {verdict} sheet v{out['sheet_version']}; trained: {out['trained']} "
                  f"({out['train_reason']}); forecast {out['forecast_id']}")
    if out["price"].get("reason"):
        console.print(escape(out["price"]["reason"]), style="dim", highlight=False)
    findings = out["price"].get("findings")
    if findings is not None and len(findings) and out["status"] != "held":
        from pricing.findings import explain_grouped

        blocked = explain_grouped(findings)
        if blocked:
            console.print("[yellow]pools or products not sold[/yellow] (details: `idlecap status`):")
            for line in blocked:
                console.print(f"  - {line}", highlight=False, markup=False, soft_wrap=True)
    for w in out.get("warnings") or []:
        console.print(f"[yellow]warning[/yellow]: {escape(w)}", highlight=False)
    path = latest_sheet_path(s.sheets_dir)
    if path is not None:
        sheet_table(path, f"{path.name}: per pool and product (discount = mean share under the reference)")
    if live:
        _live_sheet_line(s)
    console.print(f"MLflow: run {out['mlflow_run_id']} in experiment {s.nightly.experiment!r} "
                  "(summary.md first, then the nested ingest / train / forecast / price runs)")


def _server_session() -> None:
    """In the child before exec: a session of its own, and (Linux) a SIGTERM when `idlecap schedule`
    dies without its `finally` (SIGKILL), so the server is never left orphaned."""
    os.setsid()
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the `finally` in schedule() still stops it


@app.command()
def schedule(
    cron: Optional[str] = typer.Option(None, help="cron (default \\[nightly] cron, 0 2 * * *)"),
    tz: Optional[str] = typer.Option(None, "--timezone", help="time zone of the cron (default \\[nightly] timezone)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Serve the nightly deployment on a cron via Prefect (runs until stopped; Ctrl-C to stop).

    With PREFECT_API_URL set, the deployment is registered with that server. Without it, a local
    Prefect server is started first (Prefect's temporary server has no scheduler), on
    127.0.0.1:\\[nightly] prefect_port, with its UI there and its state in var/prefect."""
    import subprocess
    import sys
    import time
    from zoneinfo import ZoneInfo

    s = _settings(config)
    if config is not None:
        os.environ["IDLECAP_CONFIG"] = str(Path(config).resolve())  # scheduled runs load the same settings
    tz = tz or s.nightly.timezone
    try:
        ZoneInfo(tz)
    except Exception:  # noqa: BLE001
        console.print(f"[red]unknown time zone {tz!r}[/red] (IANA names, e.g. UTC, Europe/Paris)")
        raise typer.Exit(code=2)
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        import httpx

        port = s.nightly.prefect_port
        log = Path(s.prefect_home) / "server.log"
        # Its own session: a SIGTERM to our group (systemd stop, Ctrl-C) must reach the runner first, which
        # pauses its schedule over the API on the way out; the server is stopped last, in `finally` below.
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port)], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                  preexec_fn=_server_session)
        url = f"http://127.0.0.1:{port}/api"
        with console.status(f"starting a local Prefect server on {url} (log {log})"):
            deadline = time.monotonic() + 120
            while True:
                if server.poll() is not None:
                    console.print(f"[red]the Prefect server exited ({server.returncode}); see {log}[/red]")
                    raise typer.Exit(code=1)
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    server.terminate()
                    console.print(f"[red]the Prefect server did not answer in 120 s; see {log}[/red]")
                    raise typer.Exit(code=1)
                time.sleep(0.5)
        os.environ["PREFECT_API_URL"] = url  # before prefect is imported below
    try:
        from pipelines.nightly_flow import nightly_deployment

        try:
            dep = nightly_deployment(s, cron=cron, timezone_name=tz)
        except ValueError as exc:
            console.print(f"[red]invalid schedule[/red]: {exc}")
            raise typer.Exit(code=2)
        sched = dep.schedules[0].schedule
        console.print(f"serving deployment [bold]nightly/{dep.name}[/bold] on cron '{sched.cron}' ({sched.timezone}) "
                      f"with Prefect at {os.environ['PREFECT_API_URL']}"
                      + (" (local server: UI at http://127.0.0.1:%d)" % s.nightly.prefect_port if server else ""))
        from prefect import serve as prefect_serve

        prefect_serve(dep)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()


from pipelines.cli_references import references_app  # noqa: E402

app.add_typer(references_app, name="references")


def main() -> None:
    import logging
    import warnings

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no INFO lines (database set-up) on a first run
    warnings.filterwarnings("ignore", message=".*input example was not provided.*")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    app()


if __name__ == "__main__":
    main()
