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

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse.sources._csv import read_text_csv
from warehouse.sources.base import STAGED_SCHEMA, SourceOptions, TranslatedFile

SOURCE = "alibaba-genai"
INTERVAL_S = 60
_REQUIRED = ("value", "timestamp_anon", "container_ip")
_MAX_ABS_SECONDS = 1e11  # beyond year 5000: not a timestamp, stays null



def translate(path: Path, options: SourceOptions) -> TranslatedFile:
    """Translate one GenAI duty-cycle file to canonical rows (see module docstring)."""
    path = Path(path)
    frame, rejects = read_text_csv(path, _REQUIRED)
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
