"""Read providers' public price files into idlecap's long reference-rate contract.

Two public formats are read, besides idlecap's own (`canonical`, see pricing.reference):

- `ec2-dump`: the EC2 instance list of instances.vantage.sh / ec2instances.info (a JSON list of
  instances with `instance_type`, `GPU`, `GPU_model`, `GPU_memory` and per-region `pricing`).
- `azure-retail`: Azure Retail Prices API pages (`{"Items": [...], "NextPageLink": ...}`, or a
  bare list of items) and flattened snapshot CSVs of them (azure-pricing-radar: `commit_ts`,
  `skuName`, `meter_key`, ... and no `armSkuName`).

The rules are the ones data/reference_rates.csv was built with (data/README.md), so importing the
same raw files gives the same rows. A file that cannot be read as a whole (not JSON, wrong shape,
missing fields, no GPU price at all) raises ReferenceImportError naming the file; a row-level
oddity (a local zone, an accelerator that is not a GPU, a Spot-Advisor estimate, a Windows meter,
an unknown Azure SKU, ...) is skipped and counted by reason in the ImportReport, never dropped
silently. Every frame returned has exactly the columns of COLUMNS and passes
`pricing.reference.load_reference_rates`.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from pricing.reference import KEY, PRODUCTS, REQUIRED, load_reference_rates

COLUMNS = [
    "provider", "region", "region_kind", "sku", "product", "gpu_model", "gpu_variant",
    "gpus_per_instance", "usd_per_instance_hour", "usd_per_gpu_hour", "as_of", "dataset",
    "basis", "source",
]
FORMATS = ("ec2-dump", "azure-retail", "canonical")
PRICE_DECIMALS = 6  # per-GPU prices are rounded like the shipped file (sub-micro-dollar is noise)
_EXAMPLES = 3
_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


class ReferenceImportError(ValueError):
    """A price file that cannot be imported as a whole (the message names the file)."""


@dataclass
class ImportReport:
    """What was read and what was skipped, by reason (a skip is never silent).

    A count is of the thing skipped: for EC2 dumps an instance (e.g. `not_a_gpu`), an instance x
    region (`local_zone_or_wavelength`) or a single price (`no_spot_price`); for Azure a meter.
    """

    files: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    as_of_from: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, example: str, n: int = 1) -> None:
        self.skipped[reason] += n
        shown = self.examples.setdefault(reason, [])
        if len(shown) < _EXAMPLES:
            shown.append(example)

    def absorb(self, other: ImportReport) -> None:
        """Fold another file's report into this one (rows are recounted by the caller)."""
        self.files += other.files
        self.formats += other.formats
        for reason, n in other.skipped.items():
            self.skipped[reason] += n
            shown = self.examples.setdefault(reason, [])
            shown += other.examples.get(reason, [])[: _EXAMPLES - len(shown)]
        self.as_of_from.update(other.as_of_from)
        self.notes += other.notes

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "formats": self.formats, "rows": self.rows,
            "skipped": dict(sorted(self.skipped.items())), "examples": self.examples,
            "as_of_from": self.as_of_from, "notes": self.notes,
        }


class Imported(NamedTuple):
    """A long reference-rate frame (COLUMNS) and the report of how it was read."""

    rates: pd.DataFrame
    report: ImportReport


# --- format detection and dispatch ------------------------------------------------------------

def detect_format(path: str | Path) -> str:
    """Recognise a price file by its content, so an operator need not say what it is."""
    path = Path(path)
    _require_file(path)
    name = path.name.lower()
    if name.endswith(".json"):
        return _detect_json(path, _load_json(path))
    if name.endswith((".parquet", ".pq")):
        try:
            columns = list(pd.read_parquet(path).columns)
        except (OSError, ValueError) as exc:
            raise ReferenceImportError(f"{path}: not a readable Parquet file ({exc})") from None
    elif name.endswith((".csv", ".csv.gz")):
        try:
            columns = list(pd.read_csv(path, nrows=0).columns.str.strip())
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ReferenceImportError(f"{path}: not a readable CSV ({exc})") from None
    else:
        raise ReferenceImportError(f"{path}: unsupported file type (expected .json, .csv or .parquet)")
    if {"skuName", "retailPrice", "armRegionName"} <= set(columns):
        return "azure-retail"
    if set(REQUIRED) <= set(columns):
        return "canonical"
    raise ReferenceImportError(
        f"{path}: not a known price table: neither an Azure retail snapshot (skuName, retailPrice, "
        f"armRegionName, ...) nor idlecap reference rates ({', '.join(REQUIRED)}); columns: {', '.join(columns)}"
    )


def read_any(path: str | Path, fmt: str = "auto", as_of: str | pd.Timestamp | None = None) -> Imported:
    """Read one file in the given (or detected) format."""
    fmt = detect_format(path) if fmt == "auto" else _check_format(fmt)
    if fmt == "ec2-dump":
        return read_ec2_dump(path, as_of)
    if fmt == "azure-retail":
        return read_azure_retail(path, as_of)
    return read_canonical(path)


def read_files(paths: Sequence[str | Path], fmt: str = "auto", as_of: str | pd.Timestamp | None = None) -> Imported:
    """Read several files into one frame: Azure pages/snapshots are read together as one listing."""
    if not paths:
        raise ReferenceImportError("no files given")
    fmts = [detect_format(p) if fmt == "auto" else _check_format(fmt) for p in paths]
    azure = [p for p, f in zip(paths, fmts) if f == "azure-retail"]
    parts = [read_any(p, f, as_of) for p, f in zip(paths, fmts) if f != "azure-retail"]
    if azure:
        parts.append(read_azure_retail(azure, as_of))
    return combine(parts)


def combine(parts: Sequence[Imported]) -> Imported:
    """One frame from several files; a key given twice keeps the newest as_of (then the later file)."""
    report = ImportReport()
    for part in parts:
        report.absorb(part.report)
    frame = pd.concat([p.rates for p in parts], ignore_index=True)
    frame = frame.assign(_order=range(len(frame))).sort_values(["as_of", "_order"], kind="mergesort")
    dup = frame.duplicated(list(KEY), keep="last")
    for _, row in frame[dup].iterrows():
        report.skip("superseded_by_another_file", "/".join(str(row[k]) for k in KEY))
    frame = _sort(frame[~dup].drop(columns="_order"))
    report.rows = rows_by_product(frame)
    return Imported(frame, report)


def rows_by_product(rates: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Row counts per provider and product, for reports and the import log."""
    counts = rates.groupby(["provider", "product"]).size()
    out: dict[str, dict[str, int]] = {}
    for (provider, product), n in counts.items():
        out.setdefault(str(provider), {})[str(product)] = int(n)
    return out


# --- as_of ------------------------------------------------------------------------------------

def resolve_as_of(path: Path, as_of: str | pd.Timestamp | None) -> tuple[pd.Timestamp, str]:
    """The snapshot date: --as-of, else a YYYY-MM-DD in the file name, else the file's mtime."""
    if as_of is not None:
        return parse_day(as_of), "--as-of"
    m = _DATE_IN_NAME.search(path.name)
    if m:
        try:
            return parse_day(m.group(1)), "file name"
        except ValueError:
            pass
    mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    return pd.Timestamp(mtime.date()), "file modification date"


def parse_day(value: str | pd.Timestamp) -> pd.Timestamp:
    """A calendar day (tz-naive, UTC midnight) from YYYY-MM-DD or a Timestamp."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        raise ValueError(f"not a date: {value!r} (expected YYYY-MM-DD)")
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.normalize()


# --- EC2 dump ---------------------------------------------------------------------------------

# (pattern on vantage's GPU_model, gpu_model, gpu_variant); order matters (T4G before T4, L40S before L4).
_AWS_GPUS: tuple[tuple[str, str, str], ...] = (
    (r"\bG?B200\b", "B200", "SXM"),
    (r"\bB300\b", "B300", "SXM"),
    (r"\bH200\b", "H200", "SXM-141GB"),
    (r"\bH100\b", "H100", "SXM5-80GB"),
    (r"\bA100\b", "A100", "SXM4"),
    (r"\bV100\b", "V100", "SXM2"),
    (r"\bT4G\b", "T4G", ""),
    (r"\bT4\b", "T4", ""),
    (r"\bA10G\b", "A10G", ""),
    (r"\bA10\b", "A10", ""),
    (r"\bL40S\b", "L40S", ""),
    (r"\bL40\b", "L40", ""),
    (r"\bL4\b", "L4", ""),
    (r"\bK80\b", "K80", ""),
    (r"\bM60\b", "M60", ""),
    (r"\bK520\b", "K520", ""),
    (r"Radeon\s*Pro\s*V520", "RadeonProV520", ""),
    (r"RTX\s*PRO\s*6000", "RTXPRO6000", "Blackwell-Server"),
)
_NOT_GPUS = re.compile(r"Inferentia|Trainium|Qualcomm|Gaudi", re.I)
# Memory per GPU (GB) at or above which the bigger variant is meant (shared README, section 4).
_AWS_MEMORY_SPLIT = {"A100": (60.0, "A100-80GB", "A100-40GB"), "V100": (24.0, "V100-32GB", "V100")}
_AWS_RESERVED = {
    "reserved_1y": (("yrTerm1Standard.noUpfront", "1y standard no-upfront"),
                    ("yrTerm1Convertible.noUpfront", "1y convertible no-upfront")),
    "reserved_3y": (("yrTerm3Standard.noUpfront", "3y standard no-upfront"),
                    ("yrTerm3Convertible.noUpfront", "3y convertible no-upfront")),
}
# A spot price within this relative distance of on-demand is the on-demand cap, not a market price.
_SPOT_CAP_TOLERANCE = 1e-4
_STANDARD_AWS_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d+")


def read_ec2_dump(path: str | Path, as_of: str | pd.Timestamp | None = None) -> Imported:
    """AWS rows (on-demand, observed spot, 1y/3y no-upfront RI) from an ec2instances.info dump.

    Linux prices in standard regions only. Spot is `spot_avg` (mean of the current AZ prices),
    skipped when there is none, when the dump has no per-AZ min/max for it (a Spot-Advisor
    estimate: on-demand x the savings band) or when it equals on-demand (the capacity cap).
    Reserved is the standard no-upfront effective hourly rate, else convertible no-upfront.
    """
    path = Path(path)
    instances = _ec2_instances(path, _load_json(path))
    day, how = resolve_as_of(path, as_of)
    report = ImportReport(files=[str(path)], formats=["ec2-dump"], as_of_from={str(path): how})
    source = (f"{path.name} sha256:{file_sha256(path)[:12]} (EC2 instance price dump, "
              f"instances.vantage.sh / ec2instances.info format; as_of {day.date()} from the {how})")
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    for inst in instances:
        name = str(inst["instance_type"])
        if name in seen:
            report.skip("duplicate_instance", name)
            continue
        seen.add(name)
        rows += _ec2_instance_rows(inst, report)
    if not rows:
        raise ReferenceImportError(f"{path}: no GPU price rows in the EC2 dump ({_skips(report)})")
    frame = pd.DataFrame(rows).assign(provider="aws", as_of=day, dataset=f"aws_ec2_dump_{day.date()}", source=source)
    return _finish(frame, report, path)


def aws_region_kind(region: str) -> str:
    """`region` for a standard AWS region; local zones, Wavelength, GovCloud and China apart."""
    if region.startswith(("us-gov-", "us-iso")):
        return "gov"
    if region.startswith("cn-"):
        return "china"
    return "region" if _STANDARD_AWS_REGION.fullmatch(region) else "local_zone_or_wavelength"


def aws_gpu(gpu_model: Any, gpus: Any, memory_gb: Any) -> tuple[str, str, float] | str:
    """(gpu_model, gpu_variant, gpus_per_instance) from vantage's fields, or a skip reason."""
    count = _number(gpus)
    text = "" if gpu_model is None else str(gpu_model)
    if _NOT_GPUS.search(text):
        return "not_a_gpu"
    if count is None or count <= 0:
        return "no_gpu"
    for pattern, model, variant in _AWS_GPUS:
        if re.search(pattern, text, re.I):
            if model in _AWS_MEMORY_SPLIT:
                memory = _number(memory_gb)
                if memory is None or memory <= 0:
                    return "unknown_gpu_memory"
                threshold, big, small = _AWS_MEMORY_SPLIT[model]
                model = big if memory / count >= threshold else small
            return model, variant, count
    return "unknown_gpu_model"


def _ec2_instances(path: Path, data: Any) -> list[dict[str, Any]]:
    """The instance list, or a clear error when the JSON is not an EC2 instance dump."""
    if not isinstance(data, list) or not data:
        kind = "an empty list" if isinstance(data, list) else f"a JSON {type(data).__name__}"
        raise ReferenceImportError(f"{path}: not an EC2 instance dump: expected a non-empty JSON list of instances, got {kind}")
    for i, inst in enumerate(data):
        if not isinstance(inst, dict):
            raise ReferenceImportError(f"{path}: item {i} is a {type(inst).__name__}, not an instance object")
        missing = [k for k in ("instance_type", "pricing") if k not in inst]
        if missing:
            raise ReferenceImportError(f"{path}: item {i}: missing field(s) {', '.join(missing)} (not an EC2 instance dump)")
        if not isinstance(inst["pricing"], dict):
            raise ReferenceImportError(f"{path}: item {i} ({inst['instance_type']}): `pricing` is not an object")
    return data


def _ec2_instance_rows(inst: dict[str, Any], report: ImportReport) -> list[dict[str, Any]]:
    name = str(inst["instance_type"])
    gpu = aws_gpu(inst.get("GPU_model"), inst.get("GPU"), inst.get("GPU_memory"))
    if isinstance(gpu, str):
        report.skip(gpu, f"{name} ({inst.get('GPU_model')!r}, GPU={inst.get('GPU')!r})")
        return []
    model, variant, gpus = gpu
    rows = []
    for region, by_os in inst["pricing"].items():
        kind = aws_region_kind(str(region))
        where = f"{name} {region}"
        if kind != "region":
            report.skip(f"{kind}_region" if kind in ("gov", "china") else kind, where)
            continue
        linux = by_os.get("linux") if isinstance(by_os, dict) else None
        if not isinstance(linux, dict):
            report.skip("no_linux_price", where)
            continue
        base = dict(region=region, region_kind="region", sku=name, gpu_model=model, gpu_variant=variant,
                    gpus_per_instance=gpus)
        rows += [dict(base, product=p, usd_per_instance_hour=v, basis=b) for p, v, b in _ec2_prices(linux, where, report)]
    return rows


def _ec2_prices(linux: dict[str, Any], where: str, report: ImportReport) -> list[tuple[str, float, str]]:
    """(product, instance price, basis) for one instance in one region; misses are counted."""
    out = []
    on_demand = _price(linux.get("ondemand"), "on_demand", where, report)
    if on_demand is not None:
        out.append(("on_demand", on_demand, "pay_as_you_go"))
    spot = _ec2_spot(linux, on_demand, where, report)
    if spot is not None:
        out.append(("spot", spot, "observed"))
    reserved = linux.get("reserved") if isinstance(linux.get("reserved"), dict) else {}
    for product, offers in _AWS_RESERVED.items():
        for (term, basis) in offers:
            value = _number(reserved.get(term))
            if value is not None and value > 0:
                out.append((product, value, basis))
                break
        else:
            report.skip(f"no_{product}_price", where)
    return out


def _ec2_spot(linux: dict[str, Any], on_demand: float | None, where: str, report: ImportReport) -> float | None:
    spot = _price(linux.get("spot_avg"), "spot", where, report)
    if spot is None:
        return None
    if linux.get("spot_min") is None and linux.get("spot_max") is None:
        report.skip("spot_advisor_estimate", where)  # no AZ price seen: on-demand x savings band
        return None
    if on_demand is not None and spot >= on_demand * (1 - _SPOT_CAP_TOLERANCE):
        report.skip("spot_at_on_demand_cap", where)
        return None
    return spot


# --- Azure Retail Prices ----------------------------------------------------------------------

# (armSkuName as the SKU table names it, gpu_model, gpu_variant, gpus_per_instance, aliases).
# Aliases are other spellings of the same SKU: the Retail API's skuName, or its armSkuName when the
# snapshot data names the SKU differently. Keys are normalised by azure_sku_key.
_AZURE_SKUS: tuple[tuple[str, str, str, float, tuple[str, ...]], ...] = (
    ("Standard_NC24ads_A100_v4", "A100-80GB", "PCIe-80GB", 1, ()),
    ("Standard_NC48ads_A100_v4", "A100-80GB", "PCIe-80GB", 2, ()),
    ("Standard_NC96ads_A100_v4", "A100-80GB", "PCIe-80GB", 4, ()),
    ("Standard_ND96asr_A100_v4", "A100-40GB", "SXM4", 8, ("Standard_ND96asr_v4",)),
    ("Standard_ND96asr_A100_v4 (NU meter)", "A100-40GB", "SXM4", 8, ("ND96asrA100v4_NU",)),
    ("Standard_ND96amsr_A100_v4", "A100-80GB", "SXM4", 8, ()),
    ("Standard_ND96ams_A100_v4", "A100-80GB", "SXM4", 8, ()),
    ("Standard_ND96isr_H100_v5", "H100", "SXM5-80GB", 8, ()),
    ("Standard_ND96is_H100_v5", "H100", "SXM5-80GB (no IB)", 8, ()),
    ("Standard_ND96isnIB_H100_v5", "H100", "SXM5-80GB (no IB)", 8, ()),
    ("Standard_ND96isf_H100_v5", "H100", "SXM5-80GB (flex meter, no IB)", 8, ()),
    ("Standard_ND96isfl_H100_v5", "H100", "SXM5-80GB (flex meter)", 8, ()),
    ("Standard_ND96isrf_H100_v5", "H100", "SXM5-80GB (flex meter)", 8, ()),
    ("Standard_NC40ads_H100_v5", "H100-NVL", "NVL-94GB", 1, ()),
    ("Standard_NCC40ads_H100_v5", "H100-NVL", "NVL-94GB (confidential)", 1, ()),
    ("Standard_NC80adis_H100_v5", "H100-NVL", "NVL-94GB", 2, ()),
    ("Standard_ND96isr_H200_v5", "H200", "SXM-141GB", 8, ()),
    ("Standard_ND96isr_MI300X_v5", "MI300X", "OAM-192GB", 8, ()),
    ("Standard_ND96is_MI300X_v5", "MI300X", "OAM-192GB (no IB)", 8, ()),
    ("Standard_NC4as_T4_v3", "T4", "", 1, ()),
    ("Standard_NC8as_T4_v3", "T4", "", 1, ()),
    ("Standard_NC16as_T4_v3", "T4", "", 1, ()),
    ("Standard_NC64as_T4_v3", "T4", "", 4, ()),
    ("Standard_NC6s_v3", "V100", "PCIe-16GB", 1, ()),
    ("Standard_NC12s_v3", "V100", "PCIe-16GB", 2, ()),
    ("Standard_NC24s_v3", "V100", "PCIe-16GB", 4, ()),
    ("Standard_NC24rs_v3", "V100", "PCIe-16GB", 4, ()),
    ("Standard_ND40rs_v2", "V100-32GB", "SXM2", 8, ()),
    ("Standard_NV6ads_A10_v5", "A10", "PCIe-24GB (1/6 GPU)", 1 / 6, ()),
    ("Standard_NV12ads_A10_v5", "A10", "PCIe-24GB (1/3 GPU)", 1 / 3, ()),
    ("Standard_NV18ads_A10_v5", "A10", "PCIe-24GB (1/2 GPU)", 0.5, ()),
    ("Standard_NV36ads_A10_v5", "A10", "PCIe-24GB", 1, ()),
    ("Standard_NV36adms_A10_v5", "A10", "PCIe-24GB", 1, ()),
    ("Standard_NV72ads_A10_v5", "A10", "PCIe-24GB", 2, ()),
    ("Standard_NC6", "K80", "", 1, ()),
    ("Standard_NC12", "K80", "", 2, ()),
    ("Standard_NC24", "K80", "", 4, ()),
    ("Standard_NC24r", "K80", "", 4, ()),
    ("Standard_NV6", "M60", "", 1, ()),
    ("Standard_NV12", "M60", "", 2, ()),
    ("Standard_NV24", "M60", "", 4, ()),
    ("Standard_NV12s_v3", "M60", "", 1, ()),
    ("Standard_NV24s_v3", "M60", "", 2, ()),
    ("Standard_NV48s_v3", "M60", "", 4, ()),
    # RTX PRO 6000 (v6): only the sizes whose GPU share is documented; the Retail API's skuName
    # spells them NC144dsxlRTX6kv6.
    *((f"Standard_NC{size}{kind}_xl_RTXPRO6000BSE_v6", "RTXPRO6000", variant, share, (f"NC{size}{kind}xlRTX6kv6",))
      for size, kinds, variant, share in (
          (24, ("lds",), "Blackwell-Server (1/4 GPU)", 0.25),
          (36, ("ds", "lds"), "Blackwell-Server (1/4 GPU)", 0.25),
          (72, ("ds", "lds"), "Blackwell-Server (1/2 GPU)", 0.5),
          (144, ("ds", "lds"), "Blackwell-Server", 1),
          (288, ("ds", "lds"), "Blackwell-Server", 2),
      ) for kind in kinds),
)
AZURE_ITEM_FIELDS = ("armRegionName", "skuName", "meterName", "productName", "retailPrice", "unitOfMeasure", "type")
_SNAPSHOT_COLUMNS = ("commit_ts", "armRegionName", "productName", "skuName", "meterName", "retailPrice", "unitOfMeasure")
_WINDOWS = re.compile(r"\bWin(?:dows)?\b", re.I)


def azure_sku_key(name: str) -> str:
    """Normalised SKU name: no `Standard_` prefix, underscores, spaces; lower case."""
    s = str(name).strip().lower()
    s = s.removeprefix("standard_")
    return re.sub(r"[\s_]+", "", s)


def azure_sku_table() -> dict[str, tuple[str, str, str, float]]:
    """key -> (sku, gpu_model, gpu_variant, gpus_per_instance): the Retail API has no GPU fields."""
    table: dict[str, tuple[str, str, str, float]] = {}
    for sku, model, variant, gpus, aliases in _AZURE_SKUS:
        for name in (sku, *aliases):
            table[azure_sku_key(name)] = (sku, model, variant, float(gpus))
    return table


def read_azure_retail(paths_or_path: str | Path | Sequence[str | Path],
                      as_of: str | pd.Timestamp | None = None) -> Imported:
    """Azure rows (pay-as-you-go and Spot meters) from Retail Prices API pages and/or snapshots.

    Several files are one listing (API pages, or snapshot CSVs); a snapshot CSV keeps each meter's
    newest `commit_ts` (a meter gone from its listing's newest snapshot is withdrawn). Dropped and
    counted: Windows, Low Priority, non-Consumption (Reservation, DevTestConsumption), `*_Promo`,
    non-hourly and non-USD meters, unknown SKUs (no GPU in the SKU table), Spot meters not below
    pay-as-you-go (placeholders, not a Spot price) and Spot meters with no pay-as-you-go meter to
    check them against.
    """
    paths = [Path(paths_or_path)] if isinstance(paths_or_path, (str, Path)) else [Path(p) for p in paths_or_path]
    if not paths:
        raise ReferenceImportError("no Azure retail price files given")
    report = ImportReport(files=[str(p) for p in paths], formats=["azure-retail"] * len(paths))
    items = [item for p in paths for item in _azure_file_items(p, as_of, report)]
    rows = _azure_rows(items, report)
    if not rows:
        names = ", ".join(map(str, paths))
        raise ReferenceImportError(f"{names}: no GPU price rows in the Azure retail prices ({_skips(report)})")
    frame = pd.DataFrame(rows)
    newest = frame["as_of"].max()
    frame = frame.assign(provider="azure", region_kind="region", dataset=f"azure_retail_{newest.date()}")
    return _finish(frame, report, paths[0] if len(paths) == 1 else None)


def _azure_file_items(path: Path, as_of: Any, report: ImportReport) -> list[dict[str, Any]]:
    """Items of one file, each with `_as_of` and `_source` (the file and, for snapshots, the commit)."""
    _require_file(path)
    if path.name.lower().endswith(".json"):
        return _azure_page_items(path, _load_json(path), as_of, report)
    return _azure_snapshot_items(path, as_of, report)


def _azure_page_items(path: Path, data: Any, as_of: Any, report: ImportReport) -> list[dict[str, Any]]:
    if isinstance(data, dict) and "Items" in data:
        items, next_link = data["Items"], data.get("NextPageLink")
    elif isinstance(data, list):
        items, next_link = data, None
    else:
        raise ReferenceImportError(
            f"{path}: not an Azure Retail Prices page: expected an object with `Items` (or a list of items)")
    if not isinstance(items, list):
        raise ReferenceImportError(f"{path}: `Items` is a {type(items).__name__}, not a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ReferenceImportError(f"{path}: item {i} is a {type(item).__name__}, not an object")
        missing = [k for k in AZURE_ITEM_FIELDS if k not in item]
        if missing:
            raise ReferenceImportError(
                f"{path}: item {i}: missing field(s) {', '.join(missing)} (not Azure Retail Prices API items)")
    if next_link:
        report.notes.append(f"{path.name}: NextPageLink is set: the listing has more pages (import them together)")
    day, how = resolve_as_of(path, as_of)
    report.as_of_from[str(path)] = how
    source = f"{path.name} sha256:{file_sha256(path)[:12]} (Azure Retail Prices API page; as_of {day.date()} from the {how})"
    return [dict(item, _as_of=day, _source=source) for item in items]


def _azure_snapshot_items(path: Path, as_of: Any, report: ImportReport) -> list[dict[str, Any]]:
    """Snapshot CSV rows: each meter's newest commit, dated by that snapshot (or --as-of)."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ReferenceImportError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in _SNAPSHOT_COLUMNS if c not in raw.columns]
    if missing:
        raise ReferenceImportError(f"{path}: missing column(s) {', '.join(missing)} for an Azure retail snapshot")
    if raw.empty:
        raise ReferenceImportError(f"{path}: no rows")
    stamp = pd.to_datetime(raw["commit_ts"], utc=True, errors="coerce", format="ISO8601")
    if stamp.isna().any():
        line = int(stamp.index[stamp.isna()][0]) + 2
        raise ReferenceImportError(f"{path}: line {line}: commit_ts is not a timestamp ({raw.at[line - 2, 'commit_ts']!r})")
    newest = _newest_meters(raw.assign(_ts=stamp), path, report)
    sha = file_sha256(path)[:12]
    day, how = (parse_day(as_of), "--as-of") if as_of is not None else (None, "snapshot commit_ts")
    report.as_of_from[str(path)] = how
    items = []
    for _, row in newest.iterrows():
        item = {k: row[k] for k in raw.columns if not k.startswith("_")}
        item["type"] = _meter_type(row)
        item["_as_of"] = day if day is not None else parse_day(row["_ts"])
        commit = f"{row.get('file', '')} @ {str(row.get('commit', ''))[:12]}".strip(" @")
        item["_source"] = f"{path.name} sha256:{sha} ({commit}, Azure Retail Prices API snapshot of {row['commit_ts']})"
        items.append(item)
    return items


def _newest_meters(raw: pd.DataFrame, path: Path, report: ImportReport) -> pd.DataFrame:
    """Each meter's newest snapshot; a meter absent from its listing's newest snapshot is withdrawn.

    A listing is the `file` column (one region's price file); without it every meter is its own.
    Keeping a withdrawn meter's last price would put back a price the provider no longer lists.
    """
    cols = ["armRegionName", "productName", "skuName", "meterName"]
    meter = raw["meter_key"] if "meter_key" in raw.columns else raw[cols].agg("|".join, axis=1)
    raw = raw.assign(_meter=meter.where(meter.ne(""), raw[cols].agg("|".join, axis=1)))
    raw = raw.assign(_listing=raw["file"] if "file" in raw.columns else raw["_meter"])
    newest = raw.sort_values("_ts", kind="mergesort").drop_duplicates(["_listing", "_meter"], keep="last")
    current = newest["_ts"].eq(newest.groupby("_listing")["_ts"].transform("max"))
    for _, row in newest[~current].iterrows():
        where = f"{row['armRegionName']} {row['skuName']} ({row['productName']})"
        report.skip("meter_withdrawn", f"{where} last seen {row['commit_ts']}")
    older = len(raw) - len(newest)
    if older:
        report.notes.append(f"{path.name}: {older} rows of older snapshots of the same meters ignored (newest commit_ts kept)")
    return newest[current]


def _meter_type(row: pd.Series) -> str:
    """The price type: a `type` column, else the third field of azure-pricing-radar's meter_key."""
    if str(row.get("type", "")).strip():
        return str(row["type"]).strip()
    parts = str(row.get("meter_key", "")).split("|")
    return parts[2].strip() if len(parts) > 2 and parts[2].strip() else "Consumption"


def _azure_rows(items: list[dict[str, Any]], report: ImportReport) -> list[dict[str, Any]]:
    """Keep the GPU meters, classify them, pair Spot with pay-as-you-go, drop duplicates."""
    table = azure_sku_table()
    kept: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in items:
        row = _azure_row(item, table, report)
        if row is None:
            continue
        key = (row["region"], row["sku"], row["product"])
        if key in kept:
            keep, drop = _prefer(row, kept[key])
            report.skip("duplicate_meter", f"{drop['region']} {drop['sku']} {drop['product']} {drop['usd_per_instance_hour']}")
            kept[key] = keep
        else:
            kept[key] = row
    out = []
    for (region, sku, product), row in kept.items():
        payg = kept.get((region, sku, "on_demand"))
        if product == "spot" and payg is None:
            report.skip("spot_without_pay_as_you_go", f"{region} {sku} {row['usd_per_instance_hour']}")
            continue
        if product == "spot" and row["usd_per_instance_hour"] >= payg["usd_per_instance_hour"]:
            report.skip("spot_not_below_pay_as_you_go", f"{region} {sku} {row['usd_per_instance_hour']}")
            continue
        out.append({k: v for k, v in row.items() if not k.startswith("_")})
    return out


def _prefer(a: dict[str, Any], b: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(kept, dropped) of two meters for one SKU: the newest effectiveStartDate, then the cheaper."""
    def rank(r: dict[str, Any]) -> tuple[str, float]:
        return r["_start"], -r["usd_per_instance_hour"]
    return (a, b) if rank(a) > rank(b) else (b, a)


def _azure_row(item: dict[str, Any], table: dict[str, tuple[str, str, str, float]],
               report: ImportReport) -> dict[str, Any] | None:
    """One item -> a reference row, or None with the reason counted."""
    sku_name = str(item.get("skuName") or "").strip()
    arm = str(item.get("armSkuName") or "").strip()
    region = str(item.get("armRegionName") or "").strip()
    product_name = str(item.get("productName") or "")
    where = f"{region} {arm or sku_name} ({product_name})"
    reason = _azure_meter_reason(item, sku_name, arm, region, product_name)
    if reason:
        report.skip(reason, where)
        return None
    spot = sku_name.lower().endswith(" spot") or str(item.get("meterName", "")).lower().endswith(" spot")
    base_name = re.sub(r"\s+spot$", "", sku_name, flags=re.I)
    entry = table.get(azure_sku_key(arm)) if arm else None
    entry = entry or table.get(azure_sku_key(base_name))
    if entry is None:
        report.skip("unknown_sku", where)
        return None
    price = _number(item.get("retailPrice"))
    if price is None or price <= 0:
        report.skip("bad_price", f"{where} retailPrice={item.get('retailPrice')!r}")
        return None
    sku, model, variant, gpus = entry
    return dict(
        region=region, sku=arm or sku, product="spot" if spot else "on_demand", gpu_model=model,
        gpu_variant=variant, gpus_per_instance=gpus, usd_per_instance_hour=price,
        basis="azure_spot_meter" if spot else "pay_as_you_go", as_of=item["_as_of"], source=item["_source"],
        _start=str(item.get("effectiveStartDate") or ""),
    )


def _azure_meter_reason(item: dict[str, Any], sku_name: str, arm: str, region: str, product_name: str) -> str | None:
    """Why a meter is not a Linux pay-as-you-go / Spot hourly USD price, or None."""
    kind = str(item.get("type") or "").strip()
    currency = str(item.get("currencyCode") or "USD").strip().upper()
    checks = (
        (not region, "no_region"),
        (region.lower().startswith(("usgov", "usdod")), "gov_region"),
        (kind != "Consumption", f"type_{kind or 'missing'}"),
        (bool(_WINDOWS.search(product_name)), "windows"),
        (f"{sku_name} {item.get('meterName', '')}".lower().find("low priority") >= 0, "low_priority"),
        (arm.lower().endswith("_promo") or re.search(r"[\s_]promo(\s+spot)?$", sku_name, re.I) is not None, "promo"),
        ("dedicated host" in product_name.lower(), "dedicated_host"),
        (str(item.get("unitOfMeasure", "")).strip() != "1 Hour", "unit_not_1_hour"),
        (currency != "USD", "currency_not_usd"),
    )
    return next((reason for failed, reason in checks if failed), None)


# --- canonical --------------------------------------------------------------------------------

def read_canonical(path: str | Path) -> Imported:
    """An idlecap reference-rate file (validated by the strict loader), projected on COLUMNS."""
    path = Path(path)
    _require_file(path)
    rates = load_reference_rates(path)
    defaults = {
        "region_kind": "region", "gpu_variant": "", "dataset": path.stem,
        "basis": rates["product"].map(lambda p: "pay_as_you_go" if p == "on_demand" else ""),
        "usd_per_instance_hour": rates["usd_per_gpu_hour"] * rates["gpus_per_instance"],
    }
    for col, value in defaults.items():
        if col not in rates.columns:
            rates[col] = value
    report = ImportReport(files=[str(path)], formats=["canonical"], as_of_from={str(path): "the file's as_of column"})
    dropped = [c for c in rates.columns if c not in COLUMNS]
    if dropped:
        report.notes.append(f"{path.name}: extra column(s) not kept: {', '.join(dropped)}")
    return _finish(rates[COLUMNS], report, path, round_prices=False)


# --- shared helpers ---------------------------------------------------------------------------

def to_csv_text(rates: pd.DataFrame) -> str:
    """The one serialisation of a reference set (sorted, contract columns): equal sets, equal text."""
    df = _sort(normalise(rates))
    df = df.assign(
        gpus_per_instance=df["gpus_per_instance"].map(_fmt_number),
        as_of=df["as_of"].map(_fmt_day),
    )
    return df.to_csv(index=False, lineterminator="\n")


def normalise(rates: pd.DataFrame) -> pd.DataFrame:
    """Contract columns only, types settled, optional text empty rather than NaN."""
    df = rates.copy()
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = ""
    df = df[COLUMNS]
    text = [c for c in COLUMNS if c not in ("gpus_per_instance", "usd_per_instance_hour", "usd_per_gpu_hour", "as_of")]
    for col in text:
        df[col] = df[col].astype(object).where(df[col].notna(), "").map(str).str.strip()
    for col in ("gpus_per_instance", "usd_per_instance_hour", "usd_per_gpu_hour"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["as_of"] = pd.to_datetime(df["as_of"])
    return df.reset_index(drop=True)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _finish(frame: pd.DataFrame, report: ImportReport, path: Path | None, round_prices: bool = True) -> Imported:
    """Per-GPU price, contract columns, sort, and the strict loader's check."""
    if round_prices:
        per_gpu = frame["usd_per_instance_hour"] / frame["gpus_per_instance"]
        frame = frame.assign(usd_per_gpu_hour=per_gpu.round(PRICE_DECIMALS))
    frame = _sort(normalise(frame))
    validate(frame, path)
    report.rows = rows_by_product(frame)
    return Imported(frame, report)


def validate(rates: pd.DataFrame, path: Path | None = None) -> None:
    """Write the frame to a temp file and load it with the strict loader (the contract's judge)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rates.csv"
        out.write_text(to_csv_text(rates))
        try:
            load_reference_rates(out)
        except ValueError as exc:
            where = f"{path}: " if path is not None else ""
            raise ReferenceImportError(f"{where}the imported rows fail the reference-rate contract: {exc}") from None


def _sort(df: pd.DataFrame) -> pd.DataFrame:
    """The shipped file's order: gpu_model, product, provider, region, sku."""
    order = {p: i for i, p in enumerate(PRODUCTS)}
    df = df.assign(_p=df["product"].map(order))
    df = df.sort_values(["gpu_model", "_p", "provider", "region", "sku"], kind="mergesort")
    return df.drop(columns="_p").reset_index(drop=True)


def _fmt_number(x: float) -> str:
    """8 / 0.25 rather than 8.0, but exact (1/6 keeps all its digits)."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def _fmt_day(ts: pd.Timestamp) -> str:
    ts = pd.Timestamp(ts)
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()


def _load_json(path: Path) -> Any:
    _require_file(path)
    try:
        with path.open("rb") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReferenceImportError(f"{path}: not JSON ({exc})") from None


def _detect_json(path: Path, data: Any) -> str:
    if isinstance(data, dict) and "Items" in data:
        return "azure-retail"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if "instance_type" in data[0]:
            return "ec2-dump"
        if "retailPrice" in data[0]:
            return "azure-retail"
    shape = f"keys {', '.join(list(data)[:8])}" if isinstance(data, dict) else f"a {type(data).__name__}"
    raise ReferenceImportError(
        f"{path}: not a known price file: expected an EC2 instance dump (a list of instances with instance_type) "
        f"or Azure Retail Prices items (`Items`); found {shape}"
    )


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ReferenceImportError(f"unknown format {fmt!r} (expected auto, {', '.join(FORMATS)})")
    return fmt


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise ReferenceImportError(f"{path}: file not found")


def _number(v: Any) -> float | None:
    """A finite float, or None (missing, empty, unparseable)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _price(v: Any, product: str, where: str, report: ImportReport) -> float | None:
    """A positive price, or None with `no_<product>_price` / `bad_<product>_price` counted."""
    x = _number(v)
    if x is not None and x > 0:
        return x
    empty = v is None or (isinstance(v, str) and not v.strip())
    report.skip(f"{'no' if empty else 'bad'}_{product}_price", f"{where} {v!r}" if not empty else where)
    return None


def _skips(report: ImportReport) -> str:
    if not report.skipped:
        return "nothing read"
    return "skipped: " + ", ".join(f"{r} {n}" for r, n in report.skipped.most_common())


def describe(paths: Iterable[Path]) -> list[dict[str, str]]:
    """Path and sha256 of each file, for the import log."""
    return [{"path": str(p), "sha256": file_sha256(Path(p))} for p in paths]
