"""`idlecap references`: import providers' public price files as a new reference version; list them.

The logic lives in pricing.reference_import (reading) and pricing.reference_store (versions);
these commands only wire them to the settings and print what happened.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines.settings import Settings, load_settings

references_app = typer.Typer(
    no_args_is_help=True,
    help="Reference rates (AWS/Azure prices idlecap undercuts): import and list versions.",
)
console = Console()
if not console.is_terminal:  # piped or logged: don't squeeze tables into 80 columns
    console = Console(width=160)

ConfigOpt = typer.Option(None, "--config", "-c", help="settings TOML (default ./idlecap.toml if present)")
DEFAULT_MAX_AGE_DAYS = 30.0


def _settings(config: Optional[Path]) -> Settings:
    return load_settings(config)


def _store_dir(s: Settings) -> Path:
    """`pricing.references_dir`, which defaults to var/references."""
    return Path(getattr(s.pricing, "references_dir", None) or Path(s.var_dir) / "references")


@references_app.command("import")
def import_(
    files: list[Path] = typer.Argument(..., help="price files: EC2 instance dump JSON, Azure Retail Prices pages "
                                       "(JSON) or snapshot CSV, or idlecap reference rates (CSV/Parquet)"),
    fmt: str = typer.Option("auto", "--format", help="auto|ec2-dump|azure-retail|canonical"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="snapshot date YYYY-MM-DD (default: the date in the "
                                        "file name, else the file's modification date; Azure snapshots: commit_ts)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Import price files as a new reference version (regions in the files replace theirs; others stay)."""
    from pricing.reference import ReferenceRatesError
    from pricing.reference_import import ReferenceImportError, parse_day
    from pricing.reference_store import ReferenceStoreError, import_files

    if as_of is not None:
        try:
            parse_day(as_of)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--as-of") from None
    s = _settings(config)
    try:
        result, report = import_files(_store_dir(s), s.pricing.reference_rates, files, fmt, as_of,
                                      datetime.now(timezone.utc))
    except (ReferenceImportError, ReferenceRatesError, ReferenceStoreError, FileNotFoundError) as exc:
        _error(exc)
        raise typer.Exit(code=2) from None
    _print_report(report)
    _print_result(result)


@references_app.command("show")
def show(config: Optional[Path] = ConfigOpt) -> None:
    """Reference versions, the one in force, and each provider's newest price date and age."""
    from pricing.reference import ReferenceRatesError, load_reference_rates
    from pricing.reference_store import in_force_path, list_versions, provider_ages

    s = _settings(config)
    store = _store_dir(s)
    table = list_versions(store)
    if table.empty:
        console.print(f"no imported versions in {store}")
    else:
        _print_frame(table, f"reference versions in {store}")
    path = in_force_path(store, s.pricing.reference_rates)
    try:
        rates = load_reference_rates(path)
    except (ReferenceRatesError, FileNotFoundError) as exc:
        _error(exc, "the set in force cannot be read")
        raise typer.Exit(code=2) from None
    kind = "imported version" if not table.empty else "shipped file"
    console.print(f"in force: {path} ({kind}, {len(rates):,} rows)", markup=False)
    ages = provider_ages(rates, pd.Timestamp.now(tz="UTC"))
    limit = float(getattr(s.pricing, "references_max_age_days", DEFAULT_MAX_AGE_DAYS))
    _print_ages(ages, limit)


def _print_report(report: Any) -> None:
    t = Table(title="read")
    for col in ("provider", "product", "rows"):
        t.add_column(col, justify="right" if col == "rows" else "left")
    for provider, products in report.rows.items():
        for product, n in products.items():
            t.add_row(provider, product, f"{n:,}")
    console.print(t)
    if report.skipped:
        t = Table(title="skipped (counted, not lost)")
        for col in ("reason", "count", "examples"):
            t.add_column(col, justify="right" if col == "count" else "left")
        for reason, n in sorted(report.skipped.items()):
            t.add_row(reason, f"{n:,}", escape("; ".join(report.examples.get(reason, []))))
        console.print(t)
    for path, how in report.as_of_from.items():
        console.print(f"as_of of {Path(path).name}: from the {how}", markup=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False)


def _print_result(result: dict[str, Any]) -> None:
    replaced = ", ".join(f"{p}/{r}" for p, r in result["replaced"])
    if result["status"] == "unchanged":
        where = f"version {result['version']}" if result["version"] else "the shipped file"
        console.print(f"[green]unchanged[/green]: same content as the set in force ({where}); no version written")
        return
    console.print(f"[green]version {result['version']}[/green] written: {escape(result['path'])} "
                  f"({result['rows_total']:,} rows; base {escape(result['base'])})")
    console.print(f"replaced {len(result['replaced'])} provider/region(s): {replaced}", markup=False)
    console.print(f"rows removed {result['rows_removed']:,}, newest as_of "
                  + ", ".join(f"{k} {v}" for k, v in result["newest_as_of"].items()), markup=False)
    if result.get("removed_newer_than_import"):
        console.print(f"[yellow]warning[/yellow]: {result['removed_newer_than_import']} removed row(s) were dated after "
                      "the imported prices of their region (an older file was imported over newer prices)")


def _print_ages(ages: pd.DataFrame, limit: float) -> None:
    t = Table(title="newest reference price per provider")
    for col in ("provider", "newest as_of", "age (days)", ""):
        t.add_column(col)
    for row in ages.itertuples(index=False):
        stale = row.age_days > limit
        t.add_row(row.provider, row.newest_as_of.strftime("%Y-%m-%d"), f"{row.age_days:.0f}",
                  f"[yellow]stale (> {limit:g} days)[/yellow]" if stale else "")
    console.print(t)


def _print_frame(df: pd.DataFrame, title: str) -> None:
    t = Table(title=title)
    for col in df.columns:
        t.add_column(str(col))
    for row in df.itertuples(index=False):
        t.add_row(*("" if v is None or (isinstance(v, float) and pd.isna(v)) else escape(str(v)) for v in row))
    console.print(t)


def _error(exc: BaseException, what: str = "import failed") -> None:
    console.print(f"[red]{what}[/red]: ", end="")
    console.print(str(exc), markup=False)
