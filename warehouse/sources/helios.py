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

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse.sources._csv import read_text_csv, utc_array
from warehouse.sources.base import STAGED_SCHEMA, SourceOptions, SourceReadError, TranslatedFile

SOURCE = "helios"
INTERVAL_S = 60
BLACKOUT_FLAG = "helios_blackout"
_NAME_MARK = "_cluster_sequence_vc"
_REQUIRED = ("time", "total_gpu_num", "running_gpu_num")



def translate(path: Path, options: SourceOptions) -> TranslatedFile:
    """Translate one Helios VC minute series to canonical rows (see module docstring)."""
    path = Path(path)
    vc = path.name.split(_NAME_MARK)[0] if _NAME_MARK in path.name else ""
    if not vc:
        raise SourceReadError(
            f"{path}: cannot take the VC name from the file name (expected '<vc>{_NAME_MARK}.csv[.gz]')"
        )
    frame, rejects = read_text_csv(path, _REQUIRED)
    n = len(frame)

    local = pd.to_datetime(frame["time"].str.strip(), format="ISO8601", errors="coerce")
    ts = (local - pd.Timedelta(hours=options.helios_utc_offset_hours)).dt.tz_localize("UTC")
    blackout = np.zeros(n, dtype=bool)
    for start, end in options.helios_blackouts:
        blackout |= ((local >= pd.Timestamp(start)) & (local < pd.Timestamp(end))).to_numpy()

    table = pa.table(
        {
            "row_number": pa.array(frame["row_number"].to_numpy(), pa.int64()),
            "ts": utc_array(ts),
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


def _whole_numbers(text: pd.Series) -> pd.Series:
    """Whole numbers -> Int64; text, fractions and infinities -> null (validation quarantines)."""
    num = pd.to_numeric(text.str.strip(), errors="coerce").astype("float64")
    return num.where(np.isfinite(num) & (num == np.round(num))).astype("Int64")
