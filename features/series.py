"""Read the forecast target from the warehouse: idle GPU-hours per pool-hour, long format.

Next to the target `y` (mean idle GPUs over the hour) comes `y_min`, the fewest idle GPUs at any
sample of the hour: what reserved safety is judged on.

Hours flagged by ingest (e.g. the Helios blackout) and hours with too little telemetry
(coverage under `min_coverage`) become NaN: the models neither learn from nor are scored on
them. Hours with no row at all are NaN too. Missing never turns into zero.
"""
from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd

_SERIES_SQL = """
SELECT pool AS unique_id, ts AS ds,
       CASE WHEN coverage >= $min_coverage
             AND (quality_flag IS NULL OR NOT list_contains($mask_flags, quality_flag))
            THEN idle_gpu_hours END AS y,
       CASE WHEN coverage >= $min_coverage
             AND (quality_flag IS NULL OR NOT list_contains($mask_flags, quality_flag))
            THEN idle_gpus_min END AS y_min,
       gpus_total, gpu_model, coverage, quality_flag
FROM pool_hourly
WHERE ($pools_all OR list_contains($pools, pool))
  AND ($until_all OR ts < $until)
ORDER BY pool, ts
"""


def load_pool_series(
    con: duckdb.DuckDBPyConnection,
    pools: list[str] | None = None,
    until: datetime | None = None,
    min_coverage: float = 0.5,
    mask_flags: tuple[str, ...] = ("helios_blackout",),
) -> pd.DataFrame:
    """unique_id, ds, y, y_min, gpus_total, gpu_model, coverage, quality_flag; y and y_min NaN where masked.

    `y_min` is the fewest idle GPUs at any sample of the hour (reserved promises break at a sample);
    NaN also for hours refreshed before the warehouse kept it (`idlecap refresh --rebuild`)."""
    if until is not None and until.tzinfo is None:
        raise ValueError("until must be timezone-aware (UTC)")
    df = con.execute(
        _SERIES_SQL,
        {
            "min_coverage": min_coverage,
            "mask_flags": list(mask_flags),
            "pools_all": pools is None,
            "pools": list(pools or []),
            "until_all": until is None,
            "until": until or datetime.now().astimezone(),
        },
    ).df()
    df["ds"] = pd.to_datetime(df["ds"], utc=True)
    return df


def data_fingerprint(df: pd.DataFrame) -> str:
    """A stable hash of the series frame (what a training run saw), for MLflow lineage."""
    h = pd.util.hash_pandas_object(df[["unique_id", "ds", "y", "gpus_total"]], index=False)
    return f"{int(h.sum()) & 0xFFFFFFFFFFFFFFFF:016x}-{len(df)}"
