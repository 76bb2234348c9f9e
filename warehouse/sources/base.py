"""What every telemetry source adapter produces, and the options adapters may need.

An adapter maps one file of a known format to *canonical telemetry rows* (DESIGN.md):
`ts` (UTC, tz-aware), `node_id`, `pool`, `gpu_model`, `gpus_total`, `gpus_allocated`
(nullable), `gpu_util` (0..100, nullable), `source`, plus `quality_flag` (nullable: a known
data-quality problem such as a logging blackout, kept with the row instead of dropping it)
and `row_number` (1-based position of the record in the source file, for quarantine).

Adapters do not validate: they translate. Validation (types, ranges, duplicates, inventory)
happens once, in SQL, in `warehouse.ingest`, so every source gets the same checks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

CANONICAL_COLUMNS: tuple[str, ...] = (
    "ts",
    "node_id",
    "pool",
    "gpu_model",
    "gpus_total",
    "gpus_allocated",
    "gpu_util",
    "source",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("ts", "node_id", "pool", "gpu_model", "gpus_total")
OPTIONAL_COLUMNS: tuple[str, ...] = ("gpus_allocated", "gpu_util", "source", "quality_flag")

#: Arrow schema of a translated (non-canonical) source table.
STAGED_SCHEMA = pa.schema(
    [
        ("row_number", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("node_id", pa.string()),
        ("pool", pa.string()),
        ("gpu_model", pa.string()),
        ("gpus_total", pa.int64()),
        ("gpus_allocated", pa.int64()),
        ("gpu_util", pa.float64()),
        ("source", pa.string()),
        ("quality_flag", pa.string()),
    ]
)


class SourceReadError(Exception):
    """The file cannot be read as this source at all (missing, corrupt, wrong columns).

    Raised for file-level problems only; a bad *row* is never an exception, it is quarantined.
    """


@dataclass(frozen=True)
class SourceOptions:
    """Per-source knobs. Defaults match the public traces' documentation."""

    # Helios Earth: timestamps are local time (UTC+8); GPUs are V100 per the Helios paper.
    helios_utc_offset_hours: float = 8.0
    helios_gpu_model: str = "V100"
    # Known logging blackouts of Helios Earth, local time [start, end): flagged, not dropped.
    helios_blackouts: tuple[tuple[str, str], ...] = (
        ("2020-05-10 00:00:00", "2020-05-11 00:00:00"),
        ("2020-05-12 15:00:00", "2020-05-12 16:00:00"),
    )
    # Philly: US Pacific local time, cluster-wide node counts; GPUs per node from the machine list.
    philly_timezone: str = "America/Los_Angeles"
    philly_pool: str = "philly"
    philly_gpu_model: str = "philly-mixed"
    philly_gpus_per_node: float | None = None  # None: mean of cluster_machine_list.csv beside the file
    # Alibaba GenAI: one container = one GPU unit with a duty cycle (no allocation column).
    genai_pool: str = "alibaba-genai"
    genai_gpu_model: str = "alibaba-genai-gpu"
    genai_gpus_per_container: int = 1
    # Alibaba spot: relative hours anchored at this UTC instant; capacity from node_info_df.csv.
    spot_start: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc))
    spot_pool_prefix: str = "alibaba-spot-"
    spot_node_info: Path | None = None  # None: node_info_df.csv beside the file


@dataclass(frozen=True)
class TranslatedFile:
    """A non-canonical file translated to canonical rows (an Arrow table in STAGED_SCHEMA).

    `rejects` are records the adapter could not translate at all (e.g. an ambiguous local
    time); each becomes a quarantine row with the given reason. `interval_s` is the nominal
    sampling interval of the source, used for coverage when a node has a single sample.
    """

    table: pa.Table
    interval_s: int
    rejects: list[tuple[int, str, str, str]] = field(default_factory=list)  # (row_number, reason, detail, raw)
