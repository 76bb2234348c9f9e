"""Reference rates: the cloud prices idlecap must undercut.

A reference-rate file has one row per provider x region x sku x product (DESIGN.md, "Data
contracts"). The cheapest comparable row per GPU model sets each item's price ceiling (spot is
compared with spot; reserved with on-demand, capacity blocks and reserved instances). The file is
data, not code: a newer file with the same columns replaces the shipped one without code changes.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

PRODUCTS = ("on_demand", "spot", "reserved_1y", "reserved_3y", "capacity_block")
# Which reference products an idlecap product class is compared with (DESIGN: spot vs spot;
# reserved vs on-demand / capacity block / reserved).
COMPARABLE = {"spot": ("spot",), "reserved": ("on_demand", "capacity_block", "reserved_1y", "reserved_3y")}

REQUIRED = (
    "provider", "region", "sku", "product", "gpu_model", "gpus_per_instance", "usd_per_gpu_hour",
    "as_of", "source",
)
KEY = ("provider", "region", "sku", "product")
_TEXT = ("provider", "region", "sku", "product", "gpu_model", "source")
_NOT_EMPTY = ("provider", "sku", "gpu_model", "source")
_MAX_PROBLEMS = 20
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}(?:$|[T ])"
OUTPUT_COLUMNS = [
    "gpu_model", "product_class", "provider", "region", "sku", "product", "usd_per_gpu_hour",
    "as_of", "source", "n_candidates", "reference_gpu_model", "list_usd_per_gpu_hour", "performance_factor",
]


class ReferenceRatesError(ValueError):
    """A reference-rate file that cannot be used as a whole."""


def load_reference_rates(path: str | Path) -> pd.DataFrame:
    """Read and validate a reference-rate file (CSV, or Parquet for a .parquet/.pq suffix).

    Validation is strict: one bad row rejects the whole file. Dropping bad rows silently is not
    safe here, because the dropped row may be the cheapest reference, and losing it raises the
    price ceiling above what a customer can buy elsewhere.

    Returns the rows with text columns stripped, `usd_per_gpu_hour` and `gpus_per_instance` as
    float, `as_of` as a tz-naive Timestamp (UTC) and any optional columns kept.

    Raises FileNotFoundError when the file does not exist, and ReferenceRatesError for missing
    columns, an empty file, or invalid rows. Each invalid row is listed as
    `line N: <column>: <reason> (value=...)`, where N is the file line and the header is line 1.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference rates file not found: {path}")
    raw = _read_raw(path)
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise ReferenceRatesError(
            f"{path}: missing required column(s): {', '.join(missing)}; found: {', '.join(map(str, raw.columns))}"
        )
    if raw.empty:
        raise ReferenceRatesError(f"{path}: no reference rates (the file has no data rows)")

    text = {c: raw[c].str.strip() for c in _TEXT}
    price = pd.to_numeric(raw["usd_per_gpu_hour"].str.strip(), errors="coerce").astype(float)
    gpus = pd.to_numeric(raw["gpus_per_instance"].str.strip(), errors="coerce").astype(float)
    as_of = _parse_date(raw["as_of"].str.strip())

    checks: list[tuple[pd.Series, str, str]] = [
        (text[c].eq(""), c, "must not be empty") for c in _NOT_EMPTY
    ]
    checks += [
        (~text["product"].isin(PRODUCTS), "product", f"unknown product (expected one of {', '.join(PRODUCTS)})"),
        (~(np.isfinite(price) & (price > 0)), "usd_per_gpu_hour", "must be a finite number > 0"),
        (~(np.isfinite(gpus) & (gpus > 0)), "gpus_per_instance", "must be a finite number > 0"),
        (as_of.isna(), "as_of", "not a date (expected YYYY-MM-DD or an ISO-8601 timestamp)"),
    ]
    problems = [
        (line, order, f"line {line}: {col}: {reason} (value={raw.at[line, col]!r})")
        for order, (mask, col, reason) in enumerate(checks)
        for line in mask.index[mask.to_numpy()]
    ]
    keys = pd.DataFrame(text)[list(KEY)]
    first = keys.index.to_series().groupby([keys[k] for k in KEY], sort=False).transform("min")
    for line in keys.index[keys.duplicated(keep="first").to_numpy()]:
        value = "/".join(keys.loc[line])
        problems.append((line, len(checks), f"line {line}: {'/'.join(KEY)}: duplicate of line {first[line]} (value={value!r})"))
    if problems:
        problems.sort()
        shown = [msg for _, _, msg in problems[:_MAX_PROBLEMS]]
        if len(problems) > _MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - _MAX_PROBLEMS} more")
        raise ReferenceRatesError(
            f"{path}: {len(problems)} problem(s); the whole file is rejected:\n" + "\n".join(shown)
        )

    out = raw.assign(**text, usd_per_gpu_hour=price, gpus_per_instance=gpus, as_of=as_of)
    return out.reset_index(drop=True)


def comparable_references(
    rates: pd.DataFrame,
    gpu_models: Iterable[str],
    gpu_model_map: Mapping[str, Sequence[str]] | None = None,
    providers: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
    factors: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The cheapest comparable reference per pool GPU model and product class.

    For each model in `gpu_models` and each class in COMPARABLE, pick the row with the lowest
    `usd_per_gpu_hour` among rates whose gpu_model is in `gpu_model_map.get(model, [model])`,
    whose product belongs to the class, and whose provider / region pass the filters (None = all).
    Ties go to the first (provider, region, sku). A model with no candidate for a class gets no
    row (the caller withdraws those items). `n_candidates` counts the rows considered.

    `factors` (model -> performance factor vs its references, default 1) turn a list price into
    the price of the same work on this GPU: `usd_per_gpu_hour` is list x factor (what ceilings,
    demand and discounts use), `list_usd_per_gpu_hour` the provider's own price.
    """
    models = list(dict.fromkeys(gpu_models))
    gmap = gpu_model_map or {}
    fac = factors or {}
    pairs = pd.DataFrame(
        [(m, ref, float(fac.get(m, 1.0))) for m in models for ref in _as_list(gmap.get(m, [m]))],
        columns=["gpu_model", "ref_gpu_model", "performance_factor"],
    ).astype({"gpu_model": object, "ref_gpu_model": object}).drop_duplicates(["gpu_model", "ref_gpu_model"])
    classes = pd.DataFrame(
        [(cls, p) for cls, products in COMPARABLE.items() for p in products],
        columns=["product_class", "product"], dtype=object,
    )
    r = rates
    if providers is not None:
        r = r[r["provider"].isin(_as_list(providers))]
    if regions is not None:
        r = r[r["region"].isin(_as_list(regions))]
    r = r[["gpu_model", "provider", "region", "sku", "product", "usd_per_gpu_hour", "as_of", "source"]]
    cand = (
        pairs.merge(r.rename(columns={"gpu_model": "ref_gpu_model"}), on="ref_gpu_model")
        .merge(classes, on="product")
    )
    cand["list_usd_per_gpu_hour"] = cand["usd_per_gpu_hour"]
    cand["usd_per_gpu_hour"] = cand["usd_per_gpu_hour"] * cand["performance_factor"]
    cand["reference_gpu_model"] = cand["ref_gpu_model"]
    group = ["gpu_model", "product_class"]
    cand["n_candidates"] = cand.groupby(group)["sku"].transform("size").astype("int64")
    cand["_m"] = cand["gpu_model"].map({m: i for i, m in enumerate(models)})
    cand["_c"] = cand["product_class"].map({c: i for i, c in enumerate(COMPARABLE)})
    best = (
        cand.sort_values(["_m", "_c", "usd_per_gpu_hour", "provider", "region", "sku"], kind="mergesort")
        .drop_duplicates(group)
    )
    return best[OUTPUT_COLUMNS].reset_index(drop=True)


def _read_raw(path: Path) -> pd.DataFrame:
    """Every column as stripped-able strings, indexed by file line (header = line 1)."""
    if path.name.lower().endswith((".parquet", ".pq")):
        df = pd.read_parquet(path)
        df.index = pd.RangeIndex(2, len(df) + 2)
        for c in REQUIRED:
            if c in df.columns:
                df[c] = df[c].astype(object).where(df[c].notna(), "").map(str).astype(str)
        return df
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise ReferenceRatesError(f"{path}: no reference rates (the file is empty)") from None
    df.columns = df.columns.str.strip()
    df.index = pd.RangeIndex(2, len(df) + 2)
    df = df[~df.eq("").all(axis=1)]  # blank lines keep their line numbers but carry no row
    for c in df.columns.difference(list(REQUIRED)):
        df[c] = _infer(df[c])
    return df


def _parse_date(s: pd.Series) -> pd.Series:
    ok = s.str.match(_ISO_DATE)
    parsed = pd.to_datetime(s.where(ok), format="ISO8601", errors="coerce", utc=True)
    return parsed.dt.tz_convert(None)


def _infer(s: pd.Series) -> pd.Series:
    """Optional CSV columns arrive as strings: empty -> missing, all-numeric -> number."""
    s = s.replace("", np.nan)
    try:
        return pd.to_numeric(s)
    except (ValueError, TypeError):
        return s


def _as_list(v: str | Iterable[str]) -> list[str]:
    return [v] if isinstance(v, str) else list(v)

