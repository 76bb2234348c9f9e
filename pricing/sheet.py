"""Price sheets: the public contract (DESIGN.md), content hash, atomic immutable publishing.

A sheet is published as `price-sheet-NNNNNN.parquet` then `price-sheet-NNNNNN.json` (the JSON
is the completeness marker), each written to a temp file in the same directory and hard-linked
into place, which fails instead of overwriting: a published version never changes. `LATEST`
(the newest JSON's name) is replaced atomically last. Readers (the leasing API) only ever see
complete sheets.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ITEM_FIELDS = [
    "pool", "gpu_model", "gpu_class", "region", "product", "start", "end", "price_per_gpu_hour", "gpus_offered",
    "interruption_risk", "reference", "discount_vs_reference", "floor", "guardrails",
]
LATEST = "LATEST"
# What the published file keeps for us only: the leasing API leaves these out of customer replies
# (customers get an allowlist of fields, so a new internal field stays internal by default).
INTERNAL_ITEM_FIELDS = ("floor", "guardrails")  # our cost floor; guardrail and override notes
INTERNAL_HEADER_FIELDS = ("mlflow_run_id", "forecast_id", "content_sha256")


class SheetExistsError(FileExistsError):
    """A sheet version is immutable: publishing it twice is refused."""


def _iso(t: Any) -> str | None:
    if t is None or (isinstance(t, float) and np.isnan(t)) or t is pd.NaT:
        return None
    return pd.Timestamp(t).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(v: Any, nd: int) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


def public_items(items: pd.DataFrame) -> list[dict[str, Any]]:
    """Offered items in the contract's shape; internal forecast details stay out."""
    out = []
    items = items.copy()
    for c in ("gpu_class", "reference_gpu_model", "reference_list_price", "performance_factor"):
        if c not in items:  # items of a sheet published before the GPU catalogue
            items[c] = None
    for r in items.sort_values(["pool", "product", "start"]).itertuples(index=False):
        factor = _num(r.performance_factor, 4) if r.performance_factor is not None else None
        listed = r.reference_list_price if r.reference_list_price is not None and pd.notna(r.reference_list_price) \
            else r.reference_price
        out.append({
            "pool": r.pool, "gpu_model": r.gpu_model, "gpu_class": _text(r.gpu_class), "region": r.region,
            "product": r.product, "start": _iso(r.start), "end": _iso(r.end),
            "price_per_gpu_hour": _num(r.price_per_gpu_hour, 4), "gpus_offered": int(r.gpus_offered),
            "interruption_risk": _num(r.interruption_risk, 4),
            "reference": {
                "provider": r.reference_provider, "region": r.reference_region, "sku": r.reference_sku,
                "product": r.reference_product, "gpu_model": _text(r.reference_gpu_model),
                "price": _num(listed, 4),
                # the price of the same work on this GPU: list price x performance factor (1 = exact twin)
                "performance_factor": factor if factor is not None else 1.0,
                "equivalent_price": _num(r.reference_price, 4),
                "as_of": None if pd.isna(r.reference_as_of) else str(pd.Timestamp(r.reference_as_of).date()),
            },
            "discount_vs_reference": _num(r.discount_vs_reference, 4),
            "undercut_usd_per_gpu_hour": _num(r.reference_price - r.price_per_gpu_hour, 4),
            "floor": _num(r.floor, 4),
            "guardrails": list(r.guardrails),
        })
    return out


def _text(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def content_hash(header: dict[str, Any], items: list[dict[str, Any]]) -> str:
    """Hash of what a customer would see, minus version and timestamps of the run itself."""
    keep = {k: header[k] for k in ("valid_from", "valid_until", "data_through", "currency")}
    blob = json.dumps({"header": keep, "items": items}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class PriceSheet:
    version: int
    generated_at: pd.Timestamp
    valid_from: pd.Timestamp
    valid_until: pd.Timestamp
    data_through: pd.Timestamp
    mlflow_run_id: str | None
    forecast_id: str | None
    items: list[dict[str, Any]] = field(default_factory=list)
    currency: str = "USD"

    def header(self) -> dict[str, Any]:
        return {
            "version": self.version, "generated_at": _iso(self.generated_at), "valid_from": _iso(self.valid_from),
            "valid_until": _iso(self.valid_until), "data_through": _iso(self.data_through),
            "mlflow_run_id": self.mlflow_run_id, "forecast_id": self.forecast_id, "currency": self.currency,
        }

    @property
    def content_sha256(self) -> str:
        return content_hash(self.header(), self.items)

    def to_dict(self) -> dict[str, Any]:
        return {**self.header(), "content_sha256": self.content_sha256, "items": self.items}


def sheet_name(version: int) -> str:
    return f"price-sheet-{version:06d}"


def items_table(items: list[dict[str, Any]]) -> pd.DataFrame:
    """Flat frame of a sheet's items (reference.* as columns): the Parquet layout and `sheet show`."""
    df = pd.json_normalize(items, sep="_") if items else pd.DataFrame(columns=ITEM_FIELDS)
    for c in ("start", "end"):
        if c in df:
            df[c] = pd.to_datetime(df[c], utc=True)
    return df


def _write_exclusive(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o644)  # readable by the API's user, like any published file
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic and never overwrites
        except FileExistsError:
            raise SheetExistsError(f"{path} already exists: published sheets are immutable") from None
    finally:
        os.unlink(tmp)


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def forecast_path(sheets_dir: Path, version: int) -> Path:
    """The internal forecast published with a sheet: served only to internal API keys."""
    return Path(sheets_dir) / "internal" / f"forecast-{version:06d}.parquet"


def publish(sheet: PriceSheet, sheets_dir: Path, set_latest: bool = True,
            forecast: pd.DataFrame | None = None) -> tuple[Path, Path]:
    """Write the internal forecast and Parquet, then JSON, then (unless set_latest=False) LATEST; each atomically.

    Returns (json, parquet). With set_latest=False the caller points LATEST later (after its
    history commit) with `point_latest`. `forecast` (Nixtla long frame) is written first, so a
    sheet a reader can see always has its forecast next to it."""
    d = Path(sheets_dir)
    d.mkdir(parents=True, exist_ok=True)
    name = sheet_name(sheet.version)
    jpath, ppath = d / f"{name}.json", d / f"{name}.parquet"
    if jpath.exists():
        raise SheetExistsError(f"sheet version {sheet.version} already exists in {d}")
    if ppath.exists():
        # the JSON marks a sheet published; a Parquet without it is a crashed attempt nobody could read
        ppath.unlink()
    import io

    if forecast is not None:
        fpath = forecast_path(d, sheet.version)
        fpath.parent.mkdir(exist_ok=True)
        fbuf = io.BytesIO()
        forecast.to_parquet(fbuf, index=False)
        if fpath.exists():  # left by a crashed attempt at this version: never served (no JSON)
            fpath.unlink()
        _write_exclusive(fpath, fbuf.getvalue())
    flat = items_table(sheet.items)
    for k, v in sheet.header().items():
        flat[f"sheet_{k}"] = v
    buf = io.BytesIO()
    flat.to_parquet(buf, index=False)
    _write_exclusive(ppath, buf.getvalue())
    _write_exclusive(jpath, json.dumps(sheet.to_dict(), indent=1).encode())
    if set_latest:
        point_latest(d, sheet.version)
    return jpath, ppath


def point_latest(sheets_dir: Path, version: int) -> None:
    """Make `version` the newest sheet readers see (atomic replace of LATEST)."""
    d = Path(sheets_dir)
    _replace(d / LATEST, f"{sheet_name(version)}.json\n".encode())
    try:
        dfd = os.open(d, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    except OSError:
        pass


def highest_version(sheets_dir: Path) -> int:
    """Highest version with a JSON on disk (0 when none): versions are never reused."""
    found = sorted(Path(sheets_dir).glob("price-sheet-[0-9]*.json"))
    return int(found[-1].stem.rsplit("-", 1)[1]) if found else 0


def read_sheet(path: Path) -> dict[str, Any]:
    with Path(path).open() as fh:
        return json.load(fh)


def latest_sheet_path(sheets_dir: Path) -> Path | None:
    """The newest complete sheet: LATEST if it names an existing file, else the highest version."""
    d = Path(sheets_dir)
    p = d / LATEST
    if p.exists():
        cand = d / p.read_text().strip()
        if cand.exists():
            return cand
    found = sorted(d.glob("price-sheet-[0-9]*.json"))
    return found[-1] if found else None
