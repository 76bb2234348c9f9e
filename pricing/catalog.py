"""The GPU catalogue: what a GPU name in telemetry is, what cloud GPU it compares with, what it costs.

Telemetry keeps the name a GPU arrived with (`NVIDIA A100-SXM4-80GB`, `Tesla V100-SXM2-32GB`,
`a100_80g`); pricing resolves it to a catalogue class (`A100-80GB`) through aliases, compared
after normalisation (case, punctuation and vendor prefixes such as NVIDIA / Tesla / GeForce do
not matter). A class names the reference classes it is priced against (`|`-separated gpu_model
names of the reference-rate file) and a performance factor for classes without an exact cloud
twin (an H800 sells at 0.90 of an H100's reference). An unknown name is not guessed: the pool
cannot be priced and the finding says how to map it (`[pricing.gpu_aliases]`).

Files (data/, sourced and dated per row): `gpu_catalog.csv` (one row per class: vendor,
architecture, memory, form factor, board power, references, factor and its basis, cost) and
`gpu_aliases.csv` (alias -> class, where the spelling comes from).
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

CATALOG_COLUMNS = (
    "gpu_class", "vendor", "architecture", "launch_year", "memory_gb", "memory_type", "form_factor", "tdp_w",
    "reference_classes", "performance_factor", "factor_basis", "amortization_usd_per_gpu_hour",
    "overhead_usd_per_gpu_hour", "cost_basis", "source", "as_of",
)
ALIAS_COLUMNS = ("alias", "gpu_class", "kind", "source", "as_of")
RESOLVED_COLUMNS = ["gpu_model", "gpu_class", "match", "reference_classes", "performance_factor", "suggestion"]
_PREFIXES = ("NVIDIA", "TESLA", "GEFORCE", "AMD", "INSTINCT")


class CatalogError(ValueError):
    """A catalogue or alias file (or an alias setting) that cannot be used."""


def normalize(name: str) -> str:
    """Spelling-insensitive key: upper case, letters and digits only, vendor prefixes dropped.

    `NVIDIA A100-SXM4-80GB`, `nvidia-a100-sxm4-80gb` and `A100 SXM4 80GB` share one key."""
    key = re.sub(r"[^A-Z0-9]", "", str(name).upper())
    stripped = True
    while stripped:
        stripped = False
        for p in _PREFIXES:
            if key.startswith(p) and len(key) > len(p):
                key, stripped = key[len(p):], True
    return key


@dataclass(frozen=True)
class Resolution:
    """How one telemetry GPU name resolved."""

    gpu_model: str
    gpu_class: str | None
    match: str  # configured | alias | unknown
    suggestion: str | None = None


class GpuCatalog:
    """Catalogue classes + aliases; `resolve` maps telemetry names to classes."""

    def __init__(self, classes: pd.DataFrame, aliases: pd.DataFrame):
        self.classes = classes.set_index("gpu_class", drop=False)
        self.aliases = aliases
        self._by_key: dict[str, str] = {}
        for cls in self.classes.index:
            self._by_key[normalize(cls)] = cls
        for a, cls in zip(aliases["alias"], aliases["gpu_class"]):
            self._by_key.setdefault(normalize(a), cls)

    @classmethod
    def load(cls, catalog: str | Path, aliases: str | Path) -> "GpuCatalog":
        classes = load_classes(catalog)
        return cls(classes, load_aliases(aliases, classes))

    def class_named(self, name: str) -> str | None:
        """The class a spelling names: a class or any alias of one, compared after normalisation."""
        return name if name in self.classes.index else self._by_key.get(normalize(name))

    def check_aliases(self, configured: Mapping[str, str]) -> dict[str, str]:
        """Operator aliases (`[pricing.gpu_aliases]`, name -> class), targets made canonical
        (`a100-80gb` -> `A100-80GB`); a target that names no class is an error listing the classes."""
        out, bad = {}, {}
        for n, c in configured.items():
            cls = self.class_named(c)
            if cls is None:
                bad[n] = c
            out[n] = cls
        if bad:
            raise CatalogError(
                "pricing.gpu_aliases: unknown GPU class(es) "
                + ", ".join(f"{n!r} -> {c!r}" for n, c in bad.items())
                + f"; classes: {', '.join(self.classes.index)}")
        return out

    def check_cost_keys(self, keys: Iterable[str], configured: Mapping[str, str]) -> None:
        """`[pricing.costs.<key>]`: a key must name a class, a catalogue alias or a name mapped in
        [pricing.gpu_aliases]; a misspelt key would silently keep the catalogue's (lower) cost."""
        mapped = {normalize(k) for k in configured}
        bad = [k for k in keys if self.class_named(k) is None and normalize(k) not in mapped]
        if bad:
            hint = " ('default' is gone: costs come per class from the GPU catalogue)" if "default" in bad else ""
            raise CatalogError(
                f"pricing.costs: {', '.join(repr(k) for k in bad)} names no GPU class, catalogue alias or "
                f"[pricing.gpu_aliases] name{hint}; classes: {', '.join(self.classes.index)}")

    def resolve_one(self, name: str, configured: Mapping[str, str] | None = None) -> Resolution:
        configured = configured or {}
        if name in configured:
            return Resolution(name, configured[name], "configured")
        by_key = {normalize(k): v for k, v in configured.items()}
        key = normalize(name)
        if key in by_key:
            return Resolution(name, by_key[key], "configured")
        if key in self._by_key:
            return Resolution(name, self._by_key[key], "alias")
        close = difflib.get_close_matches(key, list(self._by_key), n=1, cutoff=0.8) if key else []
        return Resolution(name, None, "unknown", self._by_key[close[0]] if close else None)

    def resolve(self, names: Iterable[str], configured: Mapping[str, str] | None = None) -> pd.DataFrame:
        """One row per distinct name: gpu_class (None when unknown), match, references, factor, suggestion."""
        configured = self.check_aliases(configured or {})
        rows = []
        for name in dict.fromkeys(names):
            r = self.resolve_one(name, configured)
            c = self.classes.loc[r.gpu_class] if r.gpu_class is not None else None
            rows.append({
                "gpu_model": name, "gpu_class": r.gpu_class, "match": r.match,
                "reference_classes": c["reference_classes"].split("|") if c is not None else [],
                "performance_factor": float(c["performance_factor"]) if c is not None else np.nan,
                "suggestion": r.suggestion,
            })
        return pd.DataFrame(rows, columns=RESOLVED_COLUMNS)

    def cost(self, gpu_class: str) -> dict[str, float]:
        """The catalogue's cost of one GPU-hour of this class (before operator overrides)."""
        c = self.classes.loc[gpu_class]
        return {"power_kw": float(c["tdp_w"]) / 1000.0,
                "amortization_usd_per_gpu_hour": float(c["amortization_usd_per_gpu_hour"]),
                "overhead_usd_per_gpu_hour": float(c["overhead_usd_per_gpu_hour"])}


def load_classes(path: str | Path) -> pd.DataFrame:
    """Read and check gpu_catalog.csv: every column, unique classes, factor in (0, 2], source and date."""
    df = _read(path, CATALOG_COLUMNS)
    problems = []
    for line, r in df.iterrows():
        for col in ("gpu_class", "vendor", "reference_classes", "factor_basis", "source", "cost_basis"):
            if not str(r[col]).strip():
                problems.append(f"line {line}: {col} is empty")
        for col in ("tdp_w", "performance_factor", "amortization_usd_per_gpu_hour", "overhead_usd_per_gpu_hour",
                    "memory_gb", "launch_year"):
            v = pd.to_numeric(r[col], errors="coerce")
            if not np.isfinite(v) or v < 0:
                problems.append(f"line {line}: {col} must be a number >= 0 (value={r[col]!r})")
        f = pd.to_numeric(r["performance_factor"], errors="coerce")
        if np.isfinite(f) and not 0 < f <= 2:
            problems.append(f"line {line}: performance_factor must be in (0, 2] (value={r['performance_factor']!r})")
        if pd.isna(pd.to_datetime(r["as_of"], errors="coerce", format="%Y-%m-%d")):
            problems.append(f"line {line}: as_of is not a YYYY-MM-DD date (value={r['as_of']!r})")
    dup = df["gpu_class"][df["gpu_class"].duplicated()]
    problems += [f"line {line}: gpu_class {c!r} repeated" for line, c in dup.items()]
    if problems:
        raise CatalogError(f"{path}: {len(problems)} problem(s):\n" + "\n".join(problems[:20]))
    for col in ("tdp_w", "performance_factor", "amortization_usd_per_gpu_hour", "overhead_usd_per_gpu_hour",
                "memory_gb"):
        df[col] = pd.to_numeric(df[col]).astype(float)
    df["launch_year"] = pd.to_numeric(df["launch_year"]).astype(int)
    return df.reset_index(drop=True)


def load_aliases(path: str | Path, classes: pd.DataFrame | None) -> pd.DataFrame:
    """Read gpu_aliases.csv; two spellings of one key must not point at different classes."""
    df = _read(path, ALIAS_COLUMNS)
    keys = df["alias"].map(normalize)
    problems = [f"line {line}: alias is empty" for line, a in df["alias"].items() if not a.strip()]
    first: dict[str, tuple[int, str]] = {}
    for line, k, c in zip(df.index, keys, df["gpu_class"]):
        if k in first and first[k][1] != c:
            problems.append(f"line {line}: alias {df.at[line, 'alias']!r} -> {c!r} contradicts line "
                            f"{first[k][0]} (-> {first[k][1]!r}) after normalisation")
        first.setdefault(k, (line, c))
    if classes is not None:
        known = set(classes["gpu_class"])
        problems += [f"line {line}: gpu_class {c!r} is not in the catalogue" for line, c in df["gpu_class"].items()
                     if c not in known]
    if problems:
        raise CatalogError(f"{path}: {len(problems)} problem(s):\n" + "\n".join(problems[:20]))
    return df.reset_index(drop=True)


def _read(path: str | Path, columns: tuple[str, ...]) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GPU catalogue file not found: {path}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CatalogError(f"{path}: missing column(s) {', '.join(missing)}")
    df.index = pd.RangeIndex(2, len(df) + 2)  # file lines, header = 1
    return df.apply(lambda s: s.str.strip())
