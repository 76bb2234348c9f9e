"""Telemetry source adapters, by the name users pass to `--source`."""
from __future__ import annotations

import importlib
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from warehouse.sources.base import SourceOptions, SourceReadError
from warehouse.sources.canonical import Staged, stage_canonical

#: --source name -> module with `translate(path, options) -> TranslatedFile` (None: canonical).
SOURCES: dict[str, str | None] = {
    "canonical": None,
    "helios": "warehouse.sources.helios",
    "philly": "warehouse.sources.philly",
    "alibaba-genai": "warehouse.sources.alibaba_genai",
    "alibaba-spot": "warehouse.sources.alibaba_spot",
}


def stage(
    con: duckdb.DuckDBPyConnection, source: str, path: Path, options: SourceOptions, tag: str
) -> Staged:
    """Expose one file's records to DuckDB as a relation of canonical columns + row_number."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")
    module = SOURCES[source]
    if module is None:
        return stage_canonical(con, path, default_source=source, tag=tag)
    if not path.exists():
        raise SourceReadError(f"{path}: file does not exist")
    translated = importlib.import_module(module).translate(path, options)
    view = f"staged_{tag}"
    table = translated.table
    table = table.add_column(0, "_k", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    con.register(f"arrow_{tag}", table)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM arrow_{tag}")
    return Staged(
        relation=view,
        ts_type="TIMESTAMP WITH TIME ZONE",
        interval_s=translated.interval_s,
        rejects=list(translated.rejects),
        to_drop=[f"VIEW {view}", f"ARROW arrow_{tag}"],
    )


__all__ = ["SOURCES", "SourceOptions", "SourceReadError", "Staged", "stage"]
