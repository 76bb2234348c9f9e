"""Versioned reference-rate sets: what `idlecap references import` writes and pricing reads.

A store is a directory (settings `pricing.references_dir`, default var/references) holding
immutable versions `reference-rates-NNNNNN.csv` (the contract columns of
pricing.reference_import.COLUMNS) and an append-only log `imports.jsonl`, one record per version.
The set in force is the newest version, else the shipped file (`pricing.reference_rates`).

An import makes version N+1 = the set in force with every (provider, region) present in the new
rows replaced by them, so refreshing some regions (or one provider) keeps all the others. A
version is written to a temp file, checked with the strict loader and linked into place: a crash
leaves no partial version, and an existing version is never overwritten. An import whose result
equals the set in force writes nothing (idempotent).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from pricing.reference import load_reference_rates
from pricing.reference_import import (
    ImportReport,
    describe,
    normalise,
    parse_day,
    read_files,
    rows_by_product,
    to_csv_text,
)

VERSION_GLOB = "reference-rates-*.csv"
LOG_NAME = "imports.jsonl"
_VERSION = re.compile(r"reference-rates-(\d{6})\.csv")


class ReferenceStoreError(RuntimeError):
    """The store cannot take this version (e.g. another import wrote it first)."""


def version_path(store_dir: Path, version: int) -> Path:
    return Path(store_dir) / f"reference-rates-{version:06d}.csv"


def versions(store_dir: str | Path) -> list[tuple[int, Path]]:
    """(version, path) of every complete version, oldest first (temp files are not versions)."""
    store = Path(store_dir)
    if not store.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in store.glob(VERSION_GLOB)
             if (m := _VERSION.fullmatch(p.name)) and p.stat().st_size > 0]  # empty = a claimed, unfilled name
    return sorted(found)


def current_path(store_dir: str | Path) -> Path | None:
    """The newest complete version, or None when nothing was imported yet."""
    found = versions(store_dir)
    return found[-1][1] if found else None


def in_force_path(store_dir: str | Path, shipped: str | Path) -> Path:
    """The reference set pricing uses: the newest imported version, else the shipped file."""
    return current_path(store_dir) or Path(shipped)


def import_references(
    store_dir: str | Path,
    base: pd.DataFrame,
    new: pd.DataFrame,
    files: Sequence[str | Path],
    now: datetime | pd.Timestamp,
) -> dict[str, Any]:
    """Version N+1 = `base` with every (provider, region) of `new` replaced by `new`'s rows.

    Returns the import record (also appended to imports.jsonl) with `status` `created`, or
    `unchanged` (nothing written) when the result equals `base`, the set in force.
    """
    store = Path(store_dir)
    merged = merge_regions(base, new)
    text = to_csv_text(merged)
    found = versions(store)
    replaced = _region_pairs(new)
    summary = {
        "files": describe([Path(f) for f in files]),
        "rows": rows_by_product(merged),
        "rows_total": int(len(merged)),
        "imported_rows": rows_by_product(new),
        "replaced": [list(p) for p in replaced],
        "rows_removed": int(len(base) - (len(merged) - len(new))),
        "removed_newer_than_import": _removed_newer(base, new),
        "newest_as_of": _newest_as_of(merged),
    }
    if text == to_csv_text(base):
        version = found[-1][0] if found else None
        return {"status": "unchanged", "version": version, **summary}
    version = (found[-1][0] if found else 0) + 1
    path = _write_version(store, version, text)
    record = {
        "version": version, "file": path.name,
        "imported_at": _iso(now), "base_version": found[-1][0] if found else None, **summary,
    }
    _append_log(store, record)
    return {"status": "created", "path": str(path), **record}


def merge_regions(base: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """`base` without the (provider, region) pairs of `new`, plus `new`: a refresh keeps the rest."""
    base, new = normalise(base), normalise(new)
    pairs = set(_region_pairs(new))
    keep = [(p, r) not in pairs for p, r in zip(base["provider"], base["region"])]
    return pd.concat([base[keep], new], ignore_index=True)


def list_versions(store_dir: str | Path) -> pd.DataFrame:
    """One row per version: when, from which files, rows, newest as_of per provider, in force."""
    log = _read_log(Path(store_dir))
    found = versions(store_dir)
    rows = []
    for version, path in found:
        rec = log.get(version, {})
        rows.append({
            "version": version,
            "file": path.name,
            "imported_at": rec.get("imported_at"),
            "rows": rec.get("rows_total", _count_rows(path)),
            "files": ", ".join(Path(f["path"]).name for f in rec.get("files", [])),
            "replaced": len(rec.get("replaced", [])),
            "newest_as_of": ", ".join(f"{k} {v}" for k, v in rec.get("newest_as_of", {}).items()),
            "in_force": version == found[-1][0],
        })
    columns = ["version", "file", "imported_at", "rows", "files", "replaced", "newest_as_of", "in_force"]
    return pd.DataFrame(rows, columns=columns)


def provider_ages(rates: pd.DataFrame, as_of: pd.Timestamp | datetime | str) -> pd.DataFrame:
    """Per provider its newest price date and its age in days at `as_of` (for staleness warnings)."""
    now = pd.Timestamp(as_of)
    if now.tzinfo is not None:
        now = now.tz_convert("UTC").tz_localize(None)
    dates = pd.to_datetime(rates["as_of"])
    newest = dates.groupby(rates["provider"]).max().rename("newest_as_of")
    out = newest.reset_index().sort_values("provider", kind="mergesort").reset_index(drop=True)
    out["age_days"] = (now - out["newest_as_of"]) / pd.Timedelta(days=1)
    return out[["provider", "newest_as_of", "age_days"]]


def reference_age_warnings(rates: pd.DataFrame, as_of: pd.Timestamp | datetime | str, max_age_days: float) -> list[str]:
    """One warning per provider whose newest reference price is older than `max_age_days` at `as_of`.

    Old references set ceilings from prices customers may no longer see; a night says so rather
    than failing (they are still the best prices known)."""
    ages = provider_ages(rates, as_of)
    return [f"{r.provider} reference prices are {r.age_days:.0f} days old (newest {r.newest_as_of:%Y-%m-%d}, limit "
            f"{max_age_days:g} days): refresh them with `idlecap references import`"
            for r in ages.itertuples(index=False) if r.age_days > max_age_days]


def import_files(
    store_dir: str | Path,
    shipped: str | Path,
    files: Sequence[str | Path],
    fmt: str = "auto",
    as_of: str | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Any], ImportReport]:
    """Read the files, merge them into the set in force and version the result (the CLI's verb)."""
    imported = read_files(files, fmt, parse_day(as_of) if as_of else None)
    base_path = in_force_path(store_dir, shipped)
    result = import_references(store_dir, load_reference_rates(base_path), imported.rates, files,
                               now or datetime.now(timezone.utc))
    result["base"] = str(base_path)
    return result, imported.report


def _write_version(store: Path, version: int, text: str) -> Path:
    """Temp file, fsync, strict check, then a hard link that fails if the version exists."""
    store.mkdir(parents=True, exist_ok=True)
    final = version_path(store, version)
    tmp = store / f".{final.name}.tmp-{os.getpid()}"
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        load_reference_rates(tmp)
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise ReferenceStoreError(f"{final} already exists (another import ran at the same time); run again") from None
        except OSError:  # no hard links on this filesystem: an exclusive create, then rename over it
            _exclusive_placeholder(final)
            os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(store)
    return final


def _exclusive_placeholder(final: Path) -> None:
    try:
        os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        raise ReferenceStoreError(f"{final} already exists (another import ran at the same time); run again") from None


def _append_log(store: Path, record: dict[str, Any]) -> None:
    with (store / LOG_NAME).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _read_log(store: Path) -> dict[int, dict[str, Any]]:
    """version -> record; a torn last line (crash mid-append) is ignored."""
    path = store / LOG_NAME
    out: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("version"), int):
            out[rec["version"]] = rec
    return out


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _region_pairs(rates: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = rates[["provider", "region"]].drop_duplicates().sort_values(["provider", "region"])
    return [(str(p), str(r)) for p, r in pairs.itertuples(index=False)]


def _removed_newer(base: pd.DataFrame, new: pd.DataFrame) -> int:
    """Rows the import removes that are dated after the rows replacing them (an older file imported)."""
    base, new = normalise(base), normalise(new)
    newest = new.groupby(["provider", "region"])["as_of"].max().rename("_new")
    hit = base.join(newest, on=["provider", "region"], how="inner")
    return int((hit["as_of"] > hit["_new"]).sum())


def _newest_as_of(rates: pd.DataFrame) -> dict[str, str]:
    newest = pd.to_datetime(rates["as_of"]).groupby(rates["provider"]).max()
    return {str(p): pd.Timestamp(d).strftime("%Y-%m-%d") for p, d in newest.sort_index().items()}


def _count_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        return max(sum(1 for line in fh if line.strip()) - 1, 0)


def _iso(now: datetime | pd.Timestamp) -> str:
    ts = pd.Timestamp(now)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.isoformat()
