"""Reading the public traces' CSV files: text first, one record per row, nothing dropped.

Every column is read as text and numbers are parsed later, so one bad value nulls one field
instead of failing the file; records with the wrong number of fields become rejects.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from warehouse.sources.base import STAGED_SCHEMA, SourceReadError
from warehouse.sources.text_checks import text_problem

Reject = tuple[int, str, str, str]


def read_text_csv(path: Path, required: Sequence[str]) -> tuple[pd.DataFrame, list[Reject]]:
    """Every column as text plus a 1-based `row_number`; records with the wrong field count become rejects.

    Text first, numbers later: one bad value must null one field, not fail the file.
    """
    if not path.is_file():
        raise SourceReadError(f"{path}: file does not exist")
    names = read_header(path)
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


def read_header(path: Path) -> list[str]:
    problem = text_problem(path, "the source's columns")
    if problem:
        raise SourceReadError(f"{path}: {problem}")
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


def utc_array(ts: pd.Series) -> pa.Array:
    """tz-aware pandas timestamps -> Arrow timestamp[us, UTC] (NaT -> null)."""
    micros = ts.dt.tz_convert(None).to_numpy().astype("datetime64[us]")
    return pa.array(micros, STAGED_SCHEMA.field("ts").type, from_pandas=True)
