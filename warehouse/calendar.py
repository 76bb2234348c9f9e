"""The training-cycle calendar: planned internal runs, versioned by `known_at`.

A plan file (CSV or Parquet) has `run_id, pool, start, end, gpus, known_at` and optionally
`priority` (default 0) and `status` (`planned` | `cancelled`, default planned). Each row is one
version of one run's plan. Versions are append-only (primary key run_id + known_at), so the
plan as known at any past time can be replayed exactly: backtests call `plan_as_of(origin)`,
forecasts call `current_plan()`.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from warehouse.ingest import FileResult, _finish_log, _one, _start_log, file_hash, mark_aborted
from warehouse.sources.base import SourceReadError

CALENDAR_REQUIRED = ("run_id", "pool", "start", "end", "gpus", "known_at")
STATUSES = ("planned", "cancelled")

_TS_OK = r"^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|z|UTC|[+-]\d{2}(:?\d{2})?)\s*$"


def _ts(col: str) -> str:
    return f"CASE WHEN regexp_matches({col}, '{_TS_OK}') THEN TRY_CAST({col} AS TIMESTAMPTZ) END"


def _stage(con: duckdb.DuckDBPyConnection, path: Path, tag: str) -> str:
    name = path.name.lower()
    lit = "'" + str(path).replace("'", "''") + "'"
    try:
        if name.endswith((".parquet", ".pq")):
            con.execute(
                f"CREATE TEMP TABLE cal_raw_{tag} AS SELECT file_row_number + 1 AS row_number, "
                f"COLUMNS(* EXCLUDE (file_row_number))::VARCHAR FROM read_parquet({lit}, file_row_number = true)"
            )
        elif name.endswith((".csv", ".csv.gz")):
            con.execute(f"CREATE TEMP TABLE cal_csv_{tag} AS SELECT * FROM read_csv({lit}, all_varchar = true, header = true)")
            base = _one(con, f"SELECT coalesce(min(rowid), 0) FROM cal_csv_{tag}")[0]
            con.execute(
                f"CREATE TEMP TABLE cal_raw_{tag} AS SELECT rowid - {base} + 2 AS row_number, * FROM cal_csv_{tag}"
            )
            con.execute(f"DROP TABLE cal_csv_{tag}")
        else:
            raise SourceReadError(f"{path}: unsupported calendar file type (expected .csv, .csv.gz or .parquet)")
    except duckdb.Error as exc:
        raise SourceReadError(f"{path}: cannot read calendar: {str(exc).splitlines()[0]}") from exc
    cols = [r[0] for r in con.execute(f"DESCRIBE cal_raw_{tag}").fetchall()]
    missing = [c for c in CALENDAR_REQUIRED if c not in cols]
    if missing:
        raise SourceReadError(f"{path}: calendar is missing column(s) {', '.join(missing)}; found {', '.join(cols)}")
    prio = "priority" if "priority" in cols else "NULL"
    status = "status" if "status" in cols else "NULL"
    con.execute(f"""
        CREATE TEMP TABLE cal_{tag} AS
        SELECT row_number, run_id, pool, start_p AS start, end_p AS "end", gpus_d, prio_d, status_v, known_p AS known_at,
          CASE
            WHEN run_id IS NULL OR trim(run_id) = '' THEN 'missing_run_id'
            WHEN pool IS NULL OR trim(pool) = '' THEN 'missing_pool'
            WHEN start_p IS NULL THEN 'bad_start'
            WHEN end_p IS NULL THEN 'bad_end'
            WHEN end_p <= start_p THEN 'end_not_after_start'
            WHEN gpus_d IS NULL OR gpus_d <> floor(gpus_d) THEN 'bad_gpus'
            WHEN gpus_d <= 0 THEN 'gpus_not_positive'
            WHEN prio_raw IS NOT NULL AND (prio_d IS NULL OR prio_d <> floor(prio_d)) THEN 'bad_priority'
            WHEN status_v NOT IN ('planned', 'cancelled') THEN 'bad_status'
            WHEN known_p IS NULL THEN 'bad_known_at'
            WHEN cap IS NOT NULL AND gpus_d > cap THEN 'gpus_exceed_pool_capacity'
          END AS reason,
          CASE WHEN start_p IS NULL THEN 'start=' || coalesce(start_raw, 'null') || ' (ISO-8601 with a timezone expected)'
               WHEN end_p IS NULL THEN 'end=' || coalesce(end_raw, 'null') || ' (ISO-8601 with a timezone expected)'
               WHEN known_p IS NULL THEN 'known_at=' || coalesce(known_raw, 'null') || ' (ISO-8601 with a timezone expected)'
               WHEN cap IS NOT NULL AND gpus_d > cap THEN 'pool capacity is ' || cap::BIGINT || ' GPUs' END AS detail
        FROM (
          SELECT r.row_number, r.run_id, r.pool, {_ts('r.start')} AS start_p, {_ts('r."end"')} AS end_p,
                 TRY_CAST(r.gpus AS DOUBLE) AS gpus_d, r.{prio} AS prio_raw,
                 coalesce(TRY_CAST(r.{prio} AS DOUBLE), 0) AS prio_d,
                 lower(coalesce(nullif(trim(r.{status}), ''), 'planned')) AS status_v,
                 {_ts('r.known_at')} AS known_p, c.cap,
                 r.start AS start_raw, r."end" AS end_raw, r.known_at AS known_raw
          FROM cal_raw_{tag} r
          LEFT JOIN (SELECT pool, sum(gpus_total) AS cap FROM nodes GROUP BY pool) c ON c.pool = r.pool
        )
    """.replace("r.NULL", "NULL"))
    return f"cal_{tag}"


def ingest_calendar(con: duckdb.DuckDBPyConnection, path: str | Path, force: bool = False) -> FileResult:
    """Load one plan file: new versions are added, identical versions skipped, bad rows quarantined."""
    path = Path(path)
    t0 = time.perf_counter()
    mark_aborted(con)
    digest = file_hash(path) if path.is_file() else None
    ingest_id = _start_log(con, "calendar", "calendar", path, digest, path.stat().st_size if digest else None)
    result = FileResult(ingest_id=ingest_id, path=str(path), source="calendar", status="running")
    if digest and not force:
        prev = _one(con, "SELECT ingest_id, rows_in FROM ingest_log WHERE kind = 'calendar' AND content_hash = ? "
                         "AND status = 'loaded' ORDER BY ingest_id LIMIT 1", [digest])
        if prev is not None:
            result.status, result.rows_in = "skipped_same_file", int(prev[1] or 0)
            result.rows_duplicate = result.rows_in
            result.note = f"same content as ingest {prev[0]}: nothing read"
            _finish_log(con, result)
            return result
    tag = f"c{ingest_id}"
    con.execute("BEGIN TRANSACTION")
    try:
        if not path.is_file():
            raise SourceReadError(f"{path}: file does not exist")
        cal = _stage(con, path, tag)
        # Two rows for the same version in one file: identical -> duplicate, different -> quarantine.
        con.execute(f"""
            UPDATE {cal} SET reason = 'conflicting_duplicate_in_file',
                   detail = 'run ' || {cal}.run_id || ' has different rows for the same known_at'
            FROM (SELECT run_id, known_at FROM {cal} WHERE reason IS NULL GROUP BY ALL
                  HAVING count(DISTINCT hash(pool, start, "end", gpus_d, prio_d, status_v)) > 1) d
            WHERE {cal}.run_id = d.run_id AND {cal}.known_at = d.known_at AND {cal}.reason IS NULL
        """)
        con.execute(f"""
            CREATE TEMP TABLE calok_{tag} AS
            SELECT * FROM {cal} WHERE reason IS NULL
            QUALIFY row_number() OVER (PARTITION BY run_id, known_at ORDER BY row_number) = 1
        """)
        # A stored version with the same key but other content is a conflicting re-statement.
        con.execute(f"""
            UPDATE {cal} SET reason = 'conflicts_with_stored_version',
                   detail = 'run ' || {cal}.run_id || ' known_at ' || {cal}.known_at || ' is stored with other values'
            FROM training_calendar t
            WHERE {cal}.reason IS NULL AND t.run_id = {cal}.run_id AND t.known_at = {cal}.known_at
              AND (t.pool <> {cal}.pool OR t.start <> {cal}.start OR t."end" <> {cal}."end" OR t.gpus <> {cal}.gpus_d
                   OR t.priority <> {cal}.prio_d OR t.status <> {cal}.status_v)
        """)
        con.execute(f"""
            INSERT INTO training_calendar
            SELECT c.run_id, c.pool, c.start, c."end", c.gpus_d::INTEGER, c.prio_d::INTEGER, c.status_v, c.known_at, {ingest_id}
            FROM calok_{tag} c JOIN {cal} k ON k.row_number = c.row_number AND k.reason IS NULL
            ON CONFLICT DO NOTHING
        """)
        loaded = _one(con, f"SELECT count(*) FROM training_calendar WHERE ingest_id = {ingest_id}")[0]
        n_in, n_q = _one(con, f"SELECT count(*), count(*) FILTER (WHERE reason IS NOT NULL) FROM {cal}")
        con.execute(f"""
            INSERT INTO quarantine
            SELECT {ingest_id}, 'calendar', ?, c.row_number, c.reason, c.detail,
                   json_remove(to_json(r), '$.row_number')::VARCHAR, now()
            FROM {cal} c JOIN cal_raw_{tag} r USING (row_number) WHERE c.reason IS NOT NULL
        """, [str(path)])
        result.status = "loaded"
        result.rows_in, result.rows_loaded, result.rows_quarantined = int(n_in), int(loaded), int(n_q)
        result.rows_duplicate = result.rows_in - result.rows_loaded - result.rows_quarantined
        result.reasons = dict(con.execute(
            f"SELECT reason, count(*) FROM quarantine WHERE ingest_id = {ingest_id} GROUP BY reason").fetchall())
        result.duration_s = time.perf_counter() - t0
        _finish_log(con, result)
        for t in (f"cal_raw_{tag}", cal, f"calok_{tag}"):
            con.execute(f"DROP TABLE IF EXISTS {t}")
        con.execute("COMMIT")
    except (SourceReadError, duckdb.IOException, duckdb.InvalidInputException, OSError) as exc:
        con.execute("ROLLBACK")
        result.status, result.error = "failed", str(exc).splitlines()[0]
        result.duration_s = time.perf_counter() - t0
        _finish_log(con, result)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return result


_PLAN_SQL = """
SELECT run_id, pool, start, "end", gpus, priority, status, known_at
FROM training_calendar
WHERE known_at <= $as_of {pool_filter}
QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY known_at DESC) = 1
"""


def plan_as_of(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    pools: list[str] | None = None,
    include_cancelled: bool = False,
) -> pd.DataFrame:
    """The plan as it was known at `as_of`: the newest version of each run with known_at <= as_of.

    A run whose newest known version is cancelled is left out (unless include_cancelled).
    Versions learned after `as_of` are invisible, which is what makes backtests honest.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    params: dict = {"as_of": as_of}
    pool_filter = ""
    if pools is not None:
        pool_filter = "AND pool IN (SELECT unnest($pools))"
        params["pools"] = list(pools)
    df = con.execute(
        f"SELECT * FROM ({_PLAN_SQL.format(pool_filter=pool_filter)}) "
        f"{'' if include_cancelled else 'WHERE status = ' + chr(39) + 'planned' + chr(39)} ORDER BY pool, start, run_id",
        params,
    ).df()
    return df


def current_plan(con: duckdb.DuckDBPyConnection, pools: list[str] | None = None) -> pd.DataFrame:
    """The newest plan (every version ever loaded counts)."""
    return plan_as_of(con, datetime.max.replace(tzinfo=timezone.utc), pools)
