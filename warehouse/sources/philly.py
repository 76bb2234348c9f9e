"""Microsoft Philly `philly_node_sequence.csv[.gz]`: cluster-wide active/total *nodes* a minute.

Quirks this adapter absorbs:
- Counts are nodes, not GPUs, and the whole cluster is one "node" (`philly/cluster`). GPUs
  per node come from `philly_gpus_per_node` or, when unset, the mean "number of GPUs" of
  `cluster_machine_list.csv` beside the file (machines have 2 or 8 GPUs); counts are
  rounded half-to-even after scaling.
- `time` is naive US Pacific wall-clock time with DST. Spring-forward times that do not
  exist shift forward. Fall-back times (01:00-01:59 twice) are resolved by file order: in
  each run of consecutive ambiguous rows the rows before the clock steps back are daylight
  time, the rows after it standard time, and a run that never steps back is daylight time
  (a first occurrence). The real trace has the fall-back hour only once, which is why
  pandas' `ambiguous="infer"` alone is not enough. A row is rejected as
  `ambiguous_local_time` when its run steps back twice, or when its resolved instant is not
  between the neighbouring unambiguous rows (e.g. a stray repeated 01:30 after 02:00).
"""
from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse.sources._csv import read_text_csv, utc_array
from warehouse.sources.base import STAGED_SCHEMA, SourceOptions, SourceReadError, TranslatedFile

SOURCE = "philly"
INTERVAL_S = 60
NODE_ID = "philly/cluster"
MACHINE_LIST = "cluster_machine_list.csv"
_GPUS_COLUMN = "number of GPUs"
_REQUIRED = ("time", "active", "total")



def translate(path: Path, options: SourceOptions) -> TranslatedFile:
    """Translate the Philly node sequence to canonical rows (see module docstring)."""
    path = Path(path)
    try:
        ZoneInfo(options.philly_timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"philly_timezone {options.philly_timezone!r} is not a known time zone") from exc
    frame, rejects = read_text_csv(path, _REQUIRED)
    per_node = _gpus_per_node(path, options)

    local = pd.to_datetime(frame["time"].str.strip(), format="ISO8601", errors="coerce")
    ts, unresolved = _localize_by_order(local, options.philly_timezone)
    if unresolved.any():
        raw = frame.loc[unresolved, ["time", "active", "total"]].agg(",".join, axis=1)
        rejects = rejects + [
            (
                int(row),
                "ambiguous_local_time",
                f"time {text.split(',', 1)[0]!r} occurs twice in {options.philly_timezone} (DST fall-back) "
                "and its position in the file does not tell which occurrence it is",
                text,
            )
            for row, text in zip(frame.loc[unresolved, "row_number"], raw)
        ]
        keep = ~unresolved
        frame, ts = frame.loc[keep], ts[keep]

    n = len(frame)
    table = pa.table(
        {
            "row_number": pa.array(frame["row_number"].to_numpy(), pa.int64()),
            "ts": utc_array(ts),
            "node_id": pa.array([NODE_ID] * n, pa.string()),
            "pool": pa.array([options.philly_pool] * n, pa.string()),
            "gpu_model": pa.array([options.philly_gpu_model] * n, pa.string()),
            "gpus_total": pa.array(_scaled(frame["total"], per_node), pa.int64()),
            "gpus_allocated": pa.array(_scaled(frame["active"], per_node), pa.int64()),
            "gpu_util": pa.nulls(n, pa.float64()),
            "source": pa.array([SOURCE] * n, pa.string()),
            "quality_flag": pa.nulls(n, pa.string()),
        },
        schema=STAGED_SCHEMA,
    )
    return TranslatedFile(table=table, interval_s=INTERVAL_S, rejects=rejects)


def _localize_by_order(local: pd.Series, tz: str) -> tuple[pd.Series, np.ndarray]:
    """UTC instants of naive wall-clock times, resolving DST fall-back by file order.

    Returns (UTC series, mask of rows that cannot be resolved). Unparseable times stay NaT
    and are not rejected here (validation quarantines null ts).
    """
    probe = local.dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward")
    ambiguous = (probe.isna() & local.notna()).to_numpy()
    if not ambiguous.any():
        return probe.dt.tz_convert("UTC"), ambiguous

    amb = pd.Series(ambiguous, index=local.index)
    run = (amb != amb.shift()).cumsum()[amb]  # id of each run of consecutive ambiguous rows
    times = local[amb]
    steps_back = (times.groupby(run).diff() <= pd.Timedelta(0)).groupby(run).cumsum()
    is_dst = np.ones(len(local), dtype=bool)
    is_dst[ambiguous] = (steps_back == 0).to_numpy()
    utc = local.dt.tz_localize(tz, ambiguous=is_dst, nonexistent="shift_forward").dt.tz_convert("UTC")

    known = probe.dt.tz_convert("UTC")  # NaT on ambiguous and unparseable rows
    before, after = known.ffill(), known.bfill()
    out_of_order = (utc <= before) | (utc >= after)  # comparisons with NaT are False
    unresolved = ambiguous & ((steps_back.reindex(local.index, fill_value=0) >= 2) | out_of_order).to_numpy()
    return utc, unresolved


def _gpus_per_node(path: Path, options: SourceOptions) -> float:
    """The option, else the mean GPUs per machine of the machine list (a bad entry fails the file)."""
    if options.philly_gpus_per_node is not None:
        value = float(options.philly_gpus_per_node)
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"philly_gpus_per_node must be a positive number, got {value!r}")
        return value
    machines = path.parent / MACHINE_LIST
    if not machines.is_file():
        raise SourceReadError(
            f"{path}: cannot convert nodes to GPUs: philly_gpus_per_node is not set "
            f"and {machines} does not exist"
        )
    frame, bad = read_text_csv(machines, (_GPUS_COLUMN,))
    gpus = pd.to_numeric(frame[_GPUS_COLUMN].str.strip(), errors="coerce")
    invalid = frame.loc[gpus.isna() | (gpus < 0), "row_number"].tolist()
    if bad or invalid or len(gpus) == 0 or gpus.sum() <= 0:
        rows = [r[0] for r in bad] + invalid
        problem = f"bad record(s) {rows[:5]}" if rows else "no GPUs listed"
        raise SourceReadError(
            f"{machines}: cannot take GPUs per node from the machine list ({problem}); "
            "fix the file or set philly_gpus_per_node"
        )
    return float(gpus.mean())


def _scaled(nodes_text: pd.Series, per_node: float) -> pd.Series:
    """Node counts -> GPU counts (rounded half-to-even); unparseable counts -> null."""
    nodes = pd.to_numeric(nodes_text.str.strip(), errors="coerce").astype("float64")
    gpus = np.round(nodes * per_node)
    return gpus.where(np.isfinite(gpus)).astype("Int64")
