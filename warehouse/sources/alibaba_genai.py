"""Alibaba GenAI 2026 `pod_gpu_duty_cycle_anon.csv[.gz]`: per-container GPU duty cycle samples.

Quirks this adapter absorbs:
- Each container (`container_ip`, an anonymized hash) is a node with a duty cycle but no
  allocation and no GPU count, so `gpus_total` comes from `genai_gpus_per_container` and
  `gpus_allocated` stays null: idleness is judged from `gpu_util` downstream.
- `value` passes through unchanged, even outside 0..100: range checks belong to validation,
  which quarantines such rows with a reason instead of the adapter hiding them.
- `timestamp_anon` is float unix seconds, already anonymized by the publisher. On the public
  sample every stamp is a multiple of 57 s (= 0.95 x 60 s) and dividing by 0.95 lands on whole
  minutes from 2025-06-20 00:00 UTC; the stamps are taken at face value here.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from warehouse.sources.base import STAGED_SCHEMA, SourceOptions, SourceReadError, TranslatedFile

SOURCE = "alibaba-genai"
INTERVAL_S = 60
_REQUIRED = ("value", "timestamp_anon", "container_ip")
_MAX_ABS_SECONDS = 1e11  # beyond year 5000: not a timestamp, stays null

Reject = tuple[int, str, str, str]


def translate(path: Path, options: SourceOptions) -> TranslatedFile:
    """Translate one GenAI duty-cycle file to canonical rows (see module docstring)."""
    path = Path(path)
    frame, rejects = _read_text_csv(path, _REQUIRED)
    n = len(frame)

    seconds = pd.to_numeric(frame["timestamp_anon"].str.strip(), errors="coerce").to_numpy(dtype="float64")
    valid_ts = np.isfinite(seconds) & (np.abs(seconds) < _MAX_ABS_SECONDS)
    micros = np.round(np.where(valid_ts, seconds, 0.0) * 1e6).astype("int64")
    util = pd.to_numeric(frame["value"].str.strip(), errors="coerce").astype("float64")
    node = frame["container_ip"].str.strip()

    table = pa.table(
        {
            "row_number": pa.array(frame["row_number"].to_numpy(), pa.int64()),
            "ts": pa.array(micros, STAGED_SCHEMA.field("ts").type, mask=~valid_ts),
            "node_id": pa.array(node.where(node != ""), pa.string()),
            "pool": pa.array([options.genai_pool] * n, pa.string()),
            "gpu_model": pa.array([options.genai_gpu_model] * n, pa.string()),
            "gpus_total": pa.array([options.genai_gpus_per_container] * n, pa.int64()),
            "gpus_allocated": pa.nulls(n, pa.int64()),
            "gpu_util": pa.array(util, pa.float64()),
            "source": pa.array([SOURCE] * n, pa.string()),
            "quality_flag": pa.nulls(n, pa.string()),
        },
        schema=STAGED_SCHEMA,
    )
    return TranslatedFile(table=table, interval_s=INTERVAL_S, rejects=rejects)


# --- CSV reading (same helper in every adapter module) -------------------------------------


def _read_text_csv(path: Path, required: Sequence[str]) -> tuple[pd.DataFrame, list[Reject]]:
    """Every column as text plus a 1-based `row_number`; records with the wrong field count become rejects.

    Text first, numbers later: one bad value must null one field, not fail the file.
    """
    if not path.is_file():
        raise SourceReadError(f"{path}: file does not exist")
    names = _header(path)
    missing = [c for c in required if c not in names]
    if missing:
        raise SourceReadError(
            f"{path}: missing required column(s) {', '.join(missing)}; found {', '.join(names)}"
        )
    bad: list[Reject] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        record = (row.number or 0) - 1  # pyarrow counts the header as record 1
        detail = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        bad.append((record, "malformed_csv_line", detail, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            str(path),
            read_options=pacsv.ReadOptions(use_threads=False, column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
        )
    except (pa.ArrowException, OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise SourceReadError(f"{path}: cannot read as CSV: {exc}") from exc
    total = table.num_rows + len(bad)
    kept = np.setdiff1d(np.arange(1, total + 1), [r[0] for r in bad])
    if len(kept) != table.num_rows:
        raise SourceReadError(f"{path}: cannot number the records of this file")
    frame = table.to_pandas()
    frame["row_number"] = kept
    return frame, bad


def _header(path: Path) -> list[str]:
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            head = b""
            while b"\n" not in head:
                chunk = stream.read(1 << 16)
                if not chunk:
                    break
                head += chunk
        line = head.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
    except (pa.ArrowException, OSError, EOFError, UnicodeDecodeError) as exc:
        raise SourceReadError(f"{path}: cannot read the header line: {exc}") from exc
    if not line.strip():
        raise SourceReadError(f"{path}: empty file (no header line)")
    names = [name.strip() for name in next(csv.reader([line]))]
    dupes = sorted({name for name in names if names.count(name) > 1})
    if dupes:
        raise SourceReadError(f"{path}: duplicate column name(s) {', '.join(dupes)}")
    return names
