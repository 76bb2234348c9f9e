"""Helios Earth `<vc>_cluster_sequence_vc.csv[.gz]`: one virtual cluster (VC), one row a minute.

Quirks this adapter absorbs:
- The file reports VC totals only, so the "node" is the whole VC (`helios-earth/<vc>`) and
  the VC name exists only in the file name.
- `time` is naive local time (the Helios authors' Slurm clock, UTC+8 by default).
- `gpu_utilization` is running/total GPUs (an allocation ratio), not SM utilization, so
  `gpu_util` stays null and allocation comes from `running_gpu_num`.
- Known logging blackouts (2020-05-10 local: every VC reports zero jobs for 24 h) look like
  a perfectly idle cluster; those rows are kept but carry `quality_flag = "helios_blackout"`.
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

SOURCE = "helios"
INTERVAL_S = 60
BLACKOUT_FLAG = "helios_blackout"
_NAME_MARK = "_cluster_sequence_vc"
_REQUIRED = ("time", "total_gpu_num", "running_gpu_num")

Reject = tuple[int, str, str, str]


def translate(path: Path, options: SourceOptions) -> TranslatedFile:
    """Translate one Helios VC minute series to canonical rows (see module docstring)."""
    path = Path(path)
    vc = path.name.split(_NAME_MARK)[0] if _NAME_MARK in path.name else ""
    if not vc:
        raise SourceReadError(
            f"{path}: cannot take the VC name from the file name (expected '<vc>{_NAME_MARK}.csv[.gz]')"
        )
    frame, rejects = _read_text_csv(path, _REQUIRED)
    n = len(frame)

    local = pd.to_datetime(frame["time"].str.strip(), format="ISO8601", errors="coerce")
    ts = (local - pd.Timedelta(hours=options.helios_utc_offset_hours)).dt.tz_localize("UTC")
    blackout = np.zeros(n, dtype=bool)
    for start, end in options.helios_blackouts:
        blackout |= ((local >= pd.Timestamp(start)) & (local < pd.Timestamp(end))).to_numpy()

    table = pa.table(
        {
            "row_number": pa.array(frame["row_number"].to_numpy(), pa.int64()),
            "ts": _utc_array(ts),
            "node_id": pa.array([f"helios-earth/{vc}"] * n, pa.string()),
            "pool": pa.array([vc] * n, pa.string()),
            "gpu_model": pa.array([options.helios_gpu_model] * n, pa.string()),
            "gpus_total": pa.array(_whole_numbers(frame["total_gpu_num"]), pa.int64()),
            "gpus_allocated": pa.array(_whole_numbers(frame["running_gpu_num"]), pa.int64()),
            "gpu_util": pa.nulls(n, pa.float64()),
            "source": pa.array([SOURCE] * n, pa.string()),
            "quality_flag": pa.array(np.where(blackout, BLACKOUT_FLAG, None), pa.string()),
        },
        schema=STAGED_SCHEMA,
    )
    return TranslatedFile(table=table, interval_s=INTERVAL_S, rejects=rejects)


def _utc_array(ts: pd.Series) -> pa.Array:
    """tz-aware pandas timestamps -> Arrow timestamp[us, UTC] (NaT -> null)."""
    micros = ts.dt.tz_convert(None).to_numpy().astype("datetime64[us]")
    return pa.array(micros, STAGED_SCHEMA.field("ts").type, from_pandas=True)


def _whole_numbers(text: pd.Series) -> pd.Series:
    """Whole numbers -> Int64; text, fractions and infinities -> null (validation quarantines)."""
    num = pd.to_numeric(text.str.strip(), errors="coerce").astype("float64")
    return num.where(np.isfinite(num) & (num == np.round(num))).astype("Int64")


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
