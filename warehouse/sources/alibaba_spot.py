"""Alibaba spot-GPU 2026 `hourly_concurrency_top_models.csv`: requested GPUs per model per hour.

Quirks this adapter absorbs:
- Wide format (`hour`, then one column per GPU model); the output is long, one row per
  (hour, model), and every model is one pool whose "node" is the pool itself
  (`spot_pool_prefix + model`). All models of one CSV row share its `row_number`.
- Hours are relative (0, 1, ...): ts = `spot_start` + hour hours.
- Capacity is not in the file: it is the sum of `gpu_capacity_num` per model in
  `node_info_df.csv` (`spot_node_info`, or beside the file). A model without a capacity
  there (absent, or any of its capacities unreadable) cannot be translated; each of its
  cells becomes a reject `unknown_gpu_capacity` instead of being dropped.
- Values are *requested* GPUs (demand, fractional, often above capacity, e.g. A10 most
  hours), not allocation. We read demand at or above capacity as a fully allocated pool:
  gpus_allocated = min(round(demand), capacity), rounded half-to-even. Demand above
  capacity is queued work that a lease could not have used either, so it adds no idle GPUs.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse.sources._csv import read_text_csv, utc_array
from warehouse.sources.base import STAGED_SCHEMA, SourceOptions, SourceReadError, TranslatedFile

SOURCE = "alibaba-spot"
INTERVAL_S = 3600
NODE_INFO = "node_info_df.csv"
_HOUR = "hour"



def translate(path: Path, options: SourceOptions) -> TranslatedFile:
    """Translate the hourly per-model concurrency table to canonical rows (see module docstring)."""
    path = Path(path)
    frame, rejects = read_text_csv(path, (_HOUR,))
    models = [c for c in frame.columns if c not in (_HOUR, "row_number")]
    if not models:
        raise SourceReadError(f"{path}: no GPU model columns after '{_HOUR}'")
    info = Path(options.spot_node_info) if options.spot_node_info is not None else path.parent / NODE_INFO
    if not info.is_file():
        raise SourceReadError(
            f"{path}: GPU capacity file {info} does not exist "
            f"(set spot_node_info or put {NODE_INFO} beside the file)"
        )
    capacity, no_capacity = _capacity(info, models)

    start = pd.Timestamp(options.spot_start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    hours = pd.to_numeric(frame[_HOUR].str.strip(), errors="coerce").astype("float64")
    ts = utc_array(start + pd.to_timedelta(hours.where(np.isfinite(hours)), unit="h"))

    # Long layout, hour-major: cell k is CSV row k // len(models), model k % len(models).
    row_idx = np.repeat(np.arange(len(frame)), len(models))
    model = np.tile(np.array(models, dtype=object), len(frame))
    text = frame[models].to_numpy(dtype=object).ravel()
    cap = pd.Series(model).map(capacity).to_numpy(dtype="float64")
    known = np.isfinite(cap)
    if not known.all():
        raw = frame[[_HOUR, *models]].agg(",".join, axis=1).to_numpy()
        row_numbers = frame["row_number"].to_numpy()
        rejects = rejects + [
            (int(row_numbers[i]), "unknown_gpu_capacity", f"GPU model {m!r} {no_capacity[m]}; cell {t!r}",
             raw[i])
            for i, m, t in zip(row_idx[~known], model[~known], text[~known])
        ]
        row_idx, model, text, cap = row_idx[known], model[known], text[known], cap[known]

    demand = pd.to_numeric(pd.Series(text, dtype="str").str.strip(), errors="coerce").astype("float64")
    demand = demand.where(np.isfinite(demand))
    allocated = np.minimum(np.round(demand), cap).astype("Int64")  # NaN (unparseable) -> null
    pools = [options.spot_pool_prefix + m for m in models]
    pool = pd.Series(model).map(dict(zip(models, pools)))
    n = len(model)
    table = pa.table(
        {
            "row_number": pa.array(frame["row_number"].to_numpy()[row_idx], pa.int64()),
            "ts": ts.take(row_idx),
            "node_id": pa.array(pool, pa.string()),
            "pool": pa.array(pool, pa.string()),
            "gpu_model": pa.array(model, pa.string()),
            "gpus_total": pa.array(cap.astype("int64"), pa.int64()),
            "gpus_allocated": pa.array(allocated, pa.int64()),
            "gpu_util": pa.nulls(n, pa.float64()),
            "source": pa.array([SOURCE] * n, pa.string()),
            "quality_flag": pa.nulls(n, pa.string()),
        },
        schema=STAGED_SCHEMA,
    )
    return TranslatedFile(table=table, interval_s=INTERVAL_S, rejects=rejects)


def _capacity(info: Path, models: Sequence[str]) -> tuple[dict[str, int], dict[str, str]]:
    """GPUs per model (sum over nodes) and, for each of `models` without a usable capacity, why."""
    frame, bad = read_text_csv(info, ("gpu_model", "gpu_capacity_num"))
    if bad:
        rows = [r[0] for r in bad][:5]
        raise SourceReadError(f"{info}: malformed record(s) {rows}; capacities would be wrong")
    gpus = pd.to_numeric(frame["gpu_capacity_num"].str.strip(), errors="coerce").astype("float64")
    per_model = pd.DataFrame(
        {
            "model": frame["gpu_model"].str.strip(),
            "gpus": gpus,
            "unreadable": ~(np.isfinite(gpus) & (gpus >= 0) & (gpus == np.round(gpus))),
        }
    ).groupby("model").agg(gpus=("gpus", "sum"), unreadable=("unreadable", "sum"))
    capacity: dict[str, int] = {}
    no_capacity: dict[str, str] = {}
    for model in models:
        if model not in per_model.index:
            no_capacity[model] = f"is not listed in {info.name}"
        elif per_model.at[model, "unreadable"]:
            count = per_model.at[model, "unreadable"]
            no_capacity[model] = f"has {count} unreadable gpu_capacity_num value(s) in {info.name}"
        elif per_model.at[model, "gpus"] <= 0:
            no_capacity[model] = f"has zero GPUs in {info.name}"
        else:
            capacity[model] = int(per_model.at[model, "gpus"])
    return capacity, no_capacity
