"""Price sheet history, pricing runs, bookings and demand fits in the warehouse."""
from __future__ import annotations

from datetime import datetime, timezone

import duckdb
import pandas as pd

from pricing.engine import ITEM_COLS
from pricing.findings import FINDING_COLUMNS


def next_version(con: duckdb.DuckDBPyConnection, on_disk: int = 0) -> int:
    """One above both the history and the files: a crashed publish never makes a version reusable."""
    db = int(con.execute("SELECT coalesce(max(version), 0) FROM price_sheets").fetchall()[0][0])
    return max(db, on_disk) + 1


def sheet_in_force(con: duckdb.DuckDBPyConnection, at) -> int | None:
    """The newest sheet whose validity had begun at `at` (the day-ago anchor of max_daily_change)."""
    r = con.execute("SELECT max(version) FROM price_sheets WHERE valid_from <= ?", [at]).fetchall()[0][0]
    return None if r is None else int(r)


def latest_sheet(con: duckdb.DuckDBPyConnection) -> dict | None:
    rows = con.execute("SELECT * FROM price_sheets ORDER BY version DESC LIMIT 1").df()
    return None if rows.empty else rows.iloc[0].to_dict()


def sheet_items(con: duckdb.DuckDBPyConnection, version: int, offered_only: bool = True) -> pd.DataFrame:
    df = con.execute(
        f"SELECT * EXCLUDE (version) FROM price_sheet_items WHERE version = ? {'AND offered' if offered_only else ''} "
        "ORDER BY pool, product, start", [version],
    ).df()
    df["guardrails"] = df["guardrails"].map(lambda g: list(g) if g is not None else [])
    return df


def history(con: duckdb.DuckDBPyConnection, limit: int = 50) -> pd.DataFrame:
    return con.execute(
        """SELECT s.version, s.generated_at, s.valid_from, s.valid_until, s.data_through, s.items,
                  round(avg(i.discount_vs_reference) FILTER (WHERE i.offered), 4) AS mean_discount,
                  sum(i.gpus_offered * i.hours) FILTER (WHERE i.offered) AS gpu_hours_offered,
                  count(*) FILTER (WHERE len(i.guardrails) > 0 AND i.offered) AS items_guarded,
                  s.mlflow_run_id
           FROM price_sheets s LEFT JOIN price_sheet_items i USING (version)
           GROUP BY ALL ORDER BY s.version DESC LIMIT ?""", [limit],
    ).df()


def record_run(con: duckdb.DuckDBPyConnection, as_of: datetime, status: str, version: int | None,
               reason: str | None, mlflow_run_id: str | None) -> None:
    con.execute("INSERT INTO pricing_runs VALUES (?, ?, ?, ?, ?, ?)",
                [datetime.now(timezone.utc), as_of, status, version, reason, mlflow_run_id])


def insert_sheet(con: duckdb.DuckDBPyConnection, header: dict, content_sha256: str, inputs_sha256: str,
                 items: pd.DataFrame, json_path: str, parquet_path: str) -> None:
    """Sheet row + every candidate item; call inside the publishing transaction."""
    offered = int(items["offered"].sum())
    con.execute(
        "INSERT INTO price_sheets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [header["version"], header["generated_at"], header["valid_from"], header["valid_until"],
         header["data_through"], header["mlflow_run_id"], header["forecast_id"], header["currency"],
         content_sha256, inputs_sha256, offered, json_path, parquet_path],
    )
    rows = items[ITEM_COLS].copy()
    rows["guardrails"] = rows["guardrails"].map(lambda g: list(g) if isinstance(g, (list, tuple)) else [])
    rows["reference_as_of"] = pd.to_datetime(rows["reference_as_of"]).dt.date
    rows.insert(0, "version", header["version"])
    con.register("sheet_rows", rows)
    cols = ", ".join(["version"] + [f'"{c}"' for c in ITEM_COLS])
    con.execute(f"INSERT INTO price_sheet_items ({cols}) SELECT {cols} FROM sheet_rows")
    con.unregister("sheet_rows")


def record_demand_fits(con: duckdb.DuckDBPyConnection, table: pd.DataFrame) -> None:
    if len(table):
        t = table.assign(fitted_at=datetime.now(timezone.utc))
        con.register("fits", t)
        con.execute("INSERT INTO demand_fits SELECT fitted_at, gpu_model, product, elasticity, share_at_reference, "
                    "source, n_items FROM fits")
        con.unregister("fits")


def booking_observations(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per published item with what was booked from it (demand-fit input)."""
    return con.execute(
        """SELECT i.version, i.pool, i.start, i.gpu_model, i.product, i.price_per_gpu_hour, i.reference_price,
                  i.gpus_total AS capacity, i.gpus_offered, coalesce(sum(b.gpus), 0) AS gpus_booked
           FROM price_sheet_items i
           LEFT JOIN bookings b ON b.sheet_version = i.version AND b.pool = i.pool
                AND b.product = i.product AND b.start = i.start
           WHERE i.offered AND i.version IN (SELECT DISTINCT sheet_version FROM bookings)
           GROUP BY ALL"""
    ).df()


def active_bookings(con: duckdb.DuckDBPyConnection, at) -> pd.DataFrame:
    """Leases not yet over at `at`: pool, start, end, gpus_offered (= GPUs booked), per booked item."""
    return con.execute(
        """SELECT b.pool, b.start, i."end" AS "end", sum(b.gpus) AS gpus_offered
           FROM bookings b JOIN price_sheet_items i ON i.version = b.sheet_version AND i.pool = b.pool
                AND i.product = b.product AND i.start = b.start
           WHERE i."end" > ? GROUP BY ALL""", [at],
    ).df()


def record_findings(con: duckdb.DuckDBPyConnection, run_at, mlflow_run_id: str | None, findings: pd.DataFrame) -> None:
    """Store one pricing pass's per-pool findings (pricing.findings)."""
    if not len(findings):
        return
    f = findings[FINDING_COLUMNS].assign(run_at=run_at, mlflow_run_id=mlflow_run_id)
    con.register("findings_rows", f)
    cols = ", ".join(["run_at", "mlflow_run_id", *FINDING_COLUMNS])
    con.execute(f"INSERT INTO pricing_findings ({cols}) SELECT {cols} FROM findings_rows")
    con.unregister("findings_rows")


def latest_findings(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The newest pricing pass's findings (empty before the first pass)."""
    return con.execute(
        f"""SELECT run_at, {', '.join(FINDING_COLUMNS)} FROM pricing_findings
            WHERE run_at = (SELECT max(run_at) FROM pricing_findings) ORDER BY pool, cause, product"""
    ).df()


def record_spot_calibration(con: duckdb.DuckDBPyConnection, mlflow_run_id: str | None, x, y, n_blocks: int,
                            early: list, later: list, briers: dict[str, float], risk_model: str = "window") -> None:
    """Store a spot-risk calibration curve (pricing.risk_calibration) of the score `risk_model` makes."""
    con.execute("INSERT INTO spot_risk_calibration VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [datetime.now(timezone.utc), mlflow_run_id, int(n_blocks), [float(v) for v in x], [float(v) for v in y],
                 ",".join(str(o) for o in early), ",".join(str(o) for o in later),
                 briers.get("raw"), briers.get("calibrated"), briers.get("constant (early rate)"), risk_model])


def latest_spot_calibration(con: duckdb.DuckDBPyConnection, risk_model: str = "window") -> dict | None:
    """The newest curve fitted on the score `risk_model` makes (a curve of another score would
    map numbers it never saw)."""
    rows = con.execute("SELECT fitted_at, n_blocks, x, y FROM spot_risk_calibration "
                       "WHERE coalesce(risk_model, 'forecast') = ? ORDER BY fitted_at DESC LIMIT 1", [risk_model]
                       ).fetchall()
    if not rows:
        return None
    fitted_at, n, x, y = rows[0]
    return {"fitted_at": fitted_at, "n_blocks": int(n), "x": list(x), "y": list(y)}


def items_live_between(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> pd.DataFrame:
    """Offered items of the sheets that became valid in [since, until), each with its sheet's
    `valid_from` and `live_until` (the next sheet's valid_from; NULL for the newest): what was
    on sale, for scoring promises against what happened."""
    return con.execute("""
        WITH s AS (
            SELECT version, valid_from, lead(valid_from) OVER (ORDER BY version) AS live_until FROM price_sheets
        )
        SELECT i.version, s.valid_from, s.live_until, i.pool, i.product, i.start, i."end", i.hours,
               i.gpus_offered, i.interruption_risk, i.price_per_gpu_hour
        FROM price_sheet_items i JOIN s USING (version)
        WHERE i.offered AND s.valid_from >= ? AND s.valid_from < ?
        ORDER BY i.version, i.pool, i.product, i.start
    """, [since, until]).df()


def actual_minima(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime,
                  min_coverage: float = 0.5) -> pd.DataFrame:
    """unique_id, ds, y, y_min of pool_hourly in [since, until) (NaN where masked or thin)."""
    return con.execute("""
        SELECT pool AS unique_id, ts AS ds,
               CASE WHEN coverage >= ? AND quality_flag IS NULL THEN idle_gpu_hours END AS y,
               CASE WHEN coverage >= ? AND quality_flag IS NULL THEN idle_gpus_min END AS y_min
        FROM pool_hourly WHERE ts >= ? AND ts < ? ORDER BY pool, ts
    """, [min_coverage, min_coverage, since, until]).df()
