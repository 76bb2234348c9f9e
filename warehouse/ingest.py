"""Validated, idempotent telemetry ingest: one transaction per file, nothing lost.

For every file: rows in = rows loaded + rows quarantined (each with a reason) + duplicates
skipped. The same file twice adds nothing (content hash); a corrected re-delivery of a
node-hour replaces the stored samples of that node-hour (they move to telemetry_superseded).
A crash mid-file leaves no partial load: the load, the quarantine, the inventory and the log
row commit together or not at all.

Validation runs as set-based SQL over the whole file (no Python loop over rows), so a 10 M-row
file costs a few passes in DuckDB.
"""
from __future__ import annotations

import glob
import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from warehouse.sources import SOURCES, SourceOptions, SourceReadError, Staged, stage

#: Extensions a directory scan picks up.
TELEMETRY_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv")

#: Every row-level quarantine reason, with the field its detail shows.
REASONS: dict[str, str] = {
    "missing_ts": "ts",
    "unparseable_ts": "ts",
    "ts_no_timezone": "ts",
    "ts_in_future": "ts",
    "ts_too_old": "ts",
    "missing_node_id": "node_id",
    "missing_pool": "pool",
    "missing_gpu_model": "gpu_model",
    "missing_gpus_total": "gpus_total",
    "bad_gpus_total": "gpus_total",
    "gpus_total_not_positive": "gpus_total",
    "bad_gpus_allocated": "gpus_allocated",
    "gpus_allocated_out_of_range": "gpus_allocated",
    "bad_gpu_util": "gpu_util",
    "gpu_util_not_finite": "gpu_util",
    "gpu_util_out_of_range": "gpu_util",
    "no_measurement": "gpus_allocated",
    "unknown_node": "node_id",
    "unknown_pool": "pool",
    "node_pool_mismatch": "pool",
    "pool_gpu_model_mismatch": "gpu_model",
    "conflicting_duplicate_in_file": "ts",
    # Produced before SQL validation (by the CSV reader or a source adapter):
    "malformed_csv_line": "",
    "ambiguous_local_time": "",
    "unknown_gpu_capacity": "",
}

#: Errors that mean "this file is unreadable as this source" (logged, the run goes on).
#: Anything else (a binder error, a bug) rolls back and propagates.
FILE_ERRORS = (
    SourceReadError,
    OSError,
    ValueError,
    duckdb.IOException,
    duckdb.InvalidInputException,
    duckdb.ConversionException,
)

SMALL_FILE_ROWS = 200_000

NICE_INTERVALS_S = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600)
MAX_GPUS_PER_NODE = 100_000  # a "node" may be a whole pool (Helios VC, Philly cluster)


@dataclass(frozen=True)
class IngestRules:
    """What counts as a valid row. `now` is injectable so tests can pin the clock."""

    future_tolerance_s: int = 600
    oldest_ts: datetime = datetime(2000, 1, 1, tzinfo=timezone.utc)
    register_new_nodes: bool = True
    register_new_pools: bool = True
    now: datetime | None = None


@dataclass
class FileResult:
    """The outcome of one file, as written to ingest_log."""

    ingest_id: int
    path: str
    source: str
    status: str
    rows_in: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_replaced: int = 0
    node_hours_replaced: int = 0
    error: str | None = None
    note: str | None = None
    duration_s: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.rows_loaded + self.rows_quarantined + self.rows_duplicate


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, files under directories (recursive), and glob patterns; sorted, unique."""
    out: list[Path] = []
    for p in paths:
        s = str(p)
        if any(ch in s for ch in "*?["):
            matches = sorted(glob.glob(s, recursive=True))
            if not matches:
                raise FileNotFoundError(f"pattern {s!r} matches no file")
            out.extend(Path(m) for m in matches if Path(m).is_file())
        elif Path(s).is_dir():
            out.extend(
                f for f in sorted(Path(s).rglob("*")) if f.is_file() and f.name.lower().endswith(TELEMETRY_SUFFIXES)
            )
        else:
            out.append(Path(s))  # a missing file is reported per file, not here
    return list(dict.fromkeys(out))


def file_hash(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence | None = None):
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def mark_aborted(con: duckdb.DuckDBPyConnection) -> int:
    """Log rows left 'running' by a killed process: their transaction never committed."""
    n = _one(con, "SELECT count(*) FROM ingest_log WHERE status = 'running'")[0]
    if n:
        con.execute(
            "UPDATE ingest_log SET status = 'aborted', finished_at = now(), "
            "error = 'process died before the file committed; nothing of it was loaded' WHERE status = 'running'"
        )
    return int(n)


def _start_log(con, kind: str, source: str, path: Path, digest: str | None, size: int | None) -> int:
    ingest_id = _one(con, "SELECT nextval('ingest_id_seq')")[0]
    con.execute(
        "INSERT INTO ingest_log (ingest_id, kind, source, file_path, content_hash, size_bytes, status, started_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 'running', now())",
        [ingest_id, kind, source, str(path), digest, size],
    )
    return int(ingest_id)


def _finish_log(con, r: FileResult) -> None:
    con.execute(
        "UPDATE ingest_log SET status = ?, rows_in = ?, rows_loaded = ?, rows_quarantined = ?, rows_duplicate = ?, "
        "rows_replaced = ?, node_hours_replaced = ?, error = ?, note = ?, finished_at = now(), duration_s = ? "
        "WHERE ingest_id = ?",
        [
            r.status, r.rows_in, r.rows_loaded, r.rows_quarantined, r.rows_duplicate, r.rows_replaced,
            r.node_hours_replaced, r.error, r.note, r.duration_s, r.ingest_id,
        ],
    )


def _ts_sql(ts_type: str) -> tuple[str, str, str]:
    """(parsed timestamptz, is-a-timestamp predicate, has-timezone predicate) for the staged `ts` type."""
    t = ts_type.upper()
    if t.startswith("TIMESTAMP WITH TIME ZONE") or t == "TIMESTAMPTZ":
        return "ts", "TRUE", "TRUE"
    if t.startswith("TIMESTAMP") or t == "DATE":
        return "NULL::TIMESTAMPTZ", "TRUE", "FALSE"  # naive: we will not guess the zone
    if t == "VARCHAR":
        iso_tz = r"^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|z|UTC|[+-]\d{2}(:?\d{2})?)\s*$"
        parsed = "TRY_CAST(ts AS TIMESTAMPTZ)"
        return parsed, f"{parsed} IS NOT NULL", f"regexp_matches(ts, '{iso_tz}')"
    return "NULL::TIMESTAMPTZ", "FALSE", "FALSE"


def _parse_sql(
    staged: Staged, default_source: str, rules: IngestRules, now: datetime, tag: str, kind: str = "VIEW"
) -> str:
    """`conv_<tag>` (view): typed values; `parsed_<tag>`: those + the first row-level check each
    record fails (NULL: none). The checks run once; later passes read conv_ minus the excluded."""
    ts_p, is_ts, has_tz = _ts_sql(staged.ts_type)
    future = now + timedelta(seconds=rules.future_tolerance_s)
    src = default_source.replace("'", "''")
    return f"""
    CREATE TEMP VIEW conv_{tag} AS
      SELECT _k, _f, row_number,
        ts IS NULL AS ts_raw_null, {is_ts} AS is_ts, {has_tz} AS has_tz, {ts_p} AS ts_p,
        node_id::VARCHAR AS node_id, pool::VARCHAR AS pool, gpu_model::VARCHAR AS gpu_model,
        gpus_total IS NULL AS total_raw_null, TRY_CAST(gpus_total AS DOUBLE) AS total_d,
        gpus_allocated IS NULL AS alloc_raw_null, TRY_CAST(gpus_allocated AS DOUBLE) AS alloc_d,
        gpu_util IS NULL AS util_raw_null, TRY_CAST(gpu_util AS DOUBLE) AS util_d,
        coalesce(nullif(source::VARCHAR, ''), '{src}') AS source,
        nullif(quality_flag::VARCHAR, '') AS quality_flag
      FROM {staged.relation};
    CREATE TEMP {kind} parsed_{tag} AS
    SELECT _k, _f, row_number, ts_p AS ts, node_id, pool, gpu_model, total_d, alloc_d, util_d, source, quality_flag,
      CASE
        WHEN ts_raw_null THEN 'missing_ts'
        WHEN NOT is_ts THEN 'unparseable_ts'
        WHEN NOT has_tz OR ts_p IS NULL THEN 'ts_no_timezone'
        WHEN ts_p > TIMESTAMPTZ '{future.isoformat()}' THEN 'ts_in_future'
        WHEN ts_p < TIMESTAMPTZ '{rules.oldest_ts.isoformat()}' THEN 'ts_too_old'
        WHEN node_id IS NULL OR trim(node_id) = '' THEN 'missing_node_id'
        WHEN pool IS NULL OR trim(pool) = '' THEN 'missing_pool'
        WHEN gpu_model IS NULL OR trim(gpu_model) = '' THEN 'missing_gpu_model'
        WHEN total_raw_null THEN 'missing_gpus_total'
        WHEN total_d IS NULL OR isinf(total_d) OR isnan(total_d) OR total_d <> floor(total_d)
             OR total_d > {MAX_GPUS_PER_NODE} THEN 'bad_gpus_total'
        WHEN total_d <= 0 THEN 'gpus_total_not_positive'
        WHEN NOT alloc_raw_null AND (alloc_d IS NULL OR isinf(alloc_d) OR isnan(alloc_d) OR alloc_d <> floor(alloc_d))
             THEN 'bad_gpus_allocated'
        WHEN alloc_d < 0 OR alloc_d > total_d THEN 'gpus_allocated_out_of_range'
        WHEN NOT util_raw_null AND util_d IS NULL THEN 'bad_gpu_util'
        WHEN isnan(util_d) OR isinf(util_d) THEN 'gpu_util_not_finite'
        WHEN util_d < 0 OR util_d > 100 THEN 'gpu_util_out_of_range'
        WHEN alloc_raw_null AND util_raw_null THEN 'no_measurement'
      END AS reason
    FROM conv_{tag}
    """


def _prepare(con, staged: Staged, default_source: str, rules: IngestRules, now: datetime, tag: str) -> None:
    """Create parsed_<tag>, x_<tag> (records excluded from the load: quarantined or duplicate)
    and ok_<tag> (what would load now). Only excluded records are ever materialized."""
    # Small files are materialized once (cheap, and later steps then plan against a plain table);
    # big ones stay a view so 10 M rows are never copied before the final insert.
    n = _one(con, f"SELECT count(*) FROM {staged.relation}")[0]
    kind = "TABLE" if n <= SMALL_FILE_ROWS else "VIEW"
    con.execute(_parse_sql(staged, default_source, rules, now, tag, kind))
    staged.to_drop[:0] = [f"{kind} parsed_{tag}", f"VIEW conv_{tag}"]
    # DuckDB 2.0.0 loses rows when, in one transaction, the first INSERT into a table adds
    # nothing and a later single INSERT adds more than a row group (122,880 rows): they are
    # invisible, even after COMMIT. x_<tag> gets several inserts, any of which may be empty, so
    # it starts with a sentinel row (_k = -1 matches no record). See bench/README.md;
    # tests/warehouse/test_ingest.py::test_big_file_* guard it.
    con.execute(f"CREATE TEMP TABLE x_{tag} (_k BIGINT, reason VARCHAR, detail VARCHAR, dup BOOLEAN)")
    con.execute(f"INSERT INTO x_{tag} VALUES (-1, NULL, NULL, FALSE)")
    con.execute(f"INSERT INTO x_{tag} SELECT _k, reason, NULL, FALSE FROM parsed_{tag} WHERE reason IS NOT NULL")
    # x_ holds every record that failed a check, so "not excluded" needs no re-check: big files
    # read the typed view again instead of re-evaluating the checks on every pass.
    if kind == "TABLE":
        base = f"(SELECT * EXCLUDE (reason) FROM parsed_{tag})"
    else:
        base = (f"(SELECT _k, _f, row_number, ts_p AS ts, node_id, pool, gpu_model, total_d, alloc_d, util_d, "
                f"source, quality_flag FROM conv_{tag})")
    con.execute(f"CREATE TEMP VIEW ok_{tag} AS SELECT * FROM {base} WHERE _k NOT IN (SELECT _k FROM x_{tag})")


def _node_hours(con, tag: str) -> None:
    """nh_<tag>: per node, pool, gpu_model and hour of the rows that would load now: samples, span,
    and how many distinct seconds they fall on.

    The one aggregate pass the inventory checks, the duplicate screen, the stored-data lookup,
    the sampling interval and the dirty hours all derive from (instead of one scan each)."""
    con.execute(f"DROP TABLE IF EXISTS nh_{tag}")
    con.execute(f"""
        CREATE TEMP TABLE nh_{tag} AS
        SELECT node_id, pool, gpu_model, h, count(*) AS n, bit_count(bitstring_agg(s, 0, 3599)) AS n_secs,
               min(ts) AS lo, max(ts) AS hi, arg_max(total_d, ts) AS total, any_value(source) AS source
        FROM (SELECT *, epoch_ms(ts) // 3600000 AS h, ((epoch_ms(ts) // 1000) % 3600)::INTEGER AS s FROM ok_{tag})
        GROUP BY node_id, pool, gpu_model, h
    """)


def _check_inventory(con, tag: str, rules: IngestRules) -> None:
    """Quarantine rows whose node or pool contradicts the inventory (or, for new ones, the file's majority)."""
    ok, x = f"ok_{tag}", f"x_{tag}"
    new_nodes, new_pools = rules.register_new_nodes, rules.register_new_pools
    con.execute(f"""
        CREATE TEMP TABLE nexp_{tag} AS
        SELECT s.node_id, coalesce(n.pool, s.pool_mode) AS exp_pool, n.node_id IS NULL AS is_new,
               (n.node_id IS NULL AND NOT {new_nodes}) OR s.n_pools > 1
               OR s.pool_mode <> coalesce(n.pool, s.pool_mode) AS bad
        FROM (SELECT node_id, arg_max(pool, n) AS pool_mode, count(*) AS n_pools
              FROM (SELECT node_id, pool, sum(n) AS n FROM nh_{tag} GROUP BY ALL) GROUP BY node_id) s
        LEFT JOIN nodes n USING (node_id)
    """)
    if _one(con, f"SELECT count(*) FROM nexp_{tag} WHERE bad")[0]:
        con.execute(f"""
            INSERT INTO {x}
            SELECT o._k,
              CASE WHEN e.is_new AND NOT {new_nodes} THEN 'unknown_node' ELSE 'node_pool_mismatch' END,
              CASE WHEN e.is_new AND NOT {new_nodes}
                   THEN 'node ' || e.node_id || ' is not in the inventory (register_new_nodes is off)'
                   ELSE 'node ' || e.node_id || ' belongs to pool ' || e.exp_pool || ', row says ' || o.pool END,
              FALSE
            FROM {ok} o JOIN nexp_{tag} e USING (node_id)
            WHERE e.bad AND (o.pool <> e.exp_pool OR (e.is_new AND NOT {new_nodes}))
        """)
    con.execute(f"""
        CREATE TEMP TABLE pexp_{tag} AS
        SELECT s.pool, coalesce(p.gpu_model, s.gm_mode) AS exp_gm, p.pool IS NULL AS is_new,
               (p.pool IS NULL AND NOT {new_pools}) OR s.n_gm > 1
               OR s.gm_mode <> coalesce(p.gpu_model, s.gm_mode) AS bad
        FROM (SELECT pool, arg_max(gpu_model, n) AS gm_mode, count(*) AS n_gm
              FROM (SELECT pool, gpu_model, sum(n) AS n FROM nh_{tag} GROUP BY ALL) GROUP BY pool) s
        LEFT JOIN pools p USING (pool)
    """)
    if _one(con, f"SELECT count(*) FROM pexp_{tag} WHERE bad")[0]:
        con.execute(f"""
            INSERT INTO {x}
            SELECT o._k,
              CASE WHEN e.is_new AND NOT {new_pools} THEN 'unknown_pool' ELSE 'pool_gpu_model_mismatch' END,
              CASE WHEN e.is_new AND NOT {new_pools}
                   THEN 'pool ' || e.pool || ' is not in the inventory (register_new_pools is off)'
                   ELSE 'pool ' || e.pool || ' holds ' || e.exp_gm || ' GPUs, row says ' || o.gpu_model END,
              FALSE
            FROM {ok} o JOIN pexp_{tag} e USING (pool)
            WHERE e.bad AND (o.gpu_model <> e.exp_gm OR (e.is_new AND NOT {new_pools}))
        """)


_VALUES = "pool, gpu_model, total_d, alloc_d, util_d, quality_flag"


def _check_duplicates_in_file(con, tag: str) -> None:
    """Same node and ts twice in one file: identical -> duplicate; different -> quarantine all of them.

    Screen first: a node-hour whose samples fall on as many distinct seconds as it has samples
    cannot hold a duplicate (nh_<tag>.n_secs, from the same pass as the other stats). Only the
    rows of the remaining node-hours are compared exactly, usually none.
    """
    ok, x = f"ok_{tag}", f"x_{tag}"
    suspects = _one(con, f"SELECT count(*) FROM nh_{tag} WHERE n > n_secs")[0]
    if not suspects:
        return
    con.execute(f"""
        CREATE TEMP TABLE dk_{tag} AS
        SELECT o.node_id, o.ts, count(DISTINCT hash({", ".join("o." + c for c in _VALUES.split(", "))})) AS n_values,
               min(o._k) AS first_k
        FROM {ok} o JOIN (SELECT DISTINCT node_id, h FROM nh_{tag} WHERE n > n_secs) c
          ON o.node_id = c.node_id AND epoch_ms(o.ts) // 3600000 = c.h
        GROUP BY o.node_id, o.ts HAVING count(*) > 1
    """)
    con.execute(f"""
        INSERT INTO {x}
        SELECT o._k,
          CASE WHEN d.n_values > 1 THEN 'conflicting_duplicate_in_file' END,
          CASE WHEN d.n_values > 1
               THEN 'node ' || d.node_id || ' has ' || d.n_values || ' different samples at this ts in the file' END,
          d.n_values = 1
        FROM {ok} o JOIN dk_{tag} d ON o.node_id = d.node_id AND o.ts = d.ts
        WHERE d.n_values > 1 OR o._k <> d.first_k
    """)


def _reconcile_with_stored(con, tag: str) -> dict[int, tuple[int, int, str | None]]:
    """Rows already stored: identical -> duplicate; any difference in a node-hour -> replace that node-hour.

    Returns, per file of the batch (`_f`) that replaced anything: (stored samples superseded,
    node-hours replaced, note). A node is in one file of a batch, so a node-hour has one file.
    """
    ok, x = f"ok_{tag}", f"x_{tag}"
    lo, hi = _one(con, f"SELECT min(lo), max(hi) FROM nh_{tag}")
    if lo is None:
        return {}
    bounds = [lo, hi]
    stored = _one(
        con,
        f"SELECT count(*) FROM telemetry WHERE ts BETWEEN ? AND ? "
        f"AND node_id IN (SELECT node_id FROM nexp_{tag} WHERE NOT is_new)",
        bounds,
    )[0]
    if not stored:
        return {}
    con.execute(f"""
        CREATE TEMP TABLE ovl_{tag} AS
        SELECT c._k, c._f, c.node_id, date_trunc('hour', c.ts) AS hour,
               (t.pool = c.pool AND t.gpu_model = c.gpu_model AND t.gpus_total = c.total_d
                AND t.gpus_allocated IS NOT DISTINCT FROM c.alloc_d AND t.gpu_util IS NOT DISTINCT FROM c.util_d
                AND t.quality_flag IS NOT DISTINCT FROM c.quality_flag) AS same
        FROM {ok} c JOIN telemetry t ON t.node_id = c.node_id AND t.ts = c.ts
        WHERE t.ts BETWEEN ? AND ?
    """, bounds)
    con.execute(f"CREATE TEMP TABLE rep_{tag} AS SELECT DISTINCT node_id, hour, _f FROM ovl_{tag} WHERE NOT same")
    con.execute(f"""
        INSERT INTO {x}
        SELECT o._k, NULL, NULL, TRUE FROM ovl_{tag} o
        WHERE o.same AND NOT EXISTS (SELECT 1 FROM rep_{tag} r WHERE r.node_id = o.node_id AND r.hour = o.hour)
    """)
    n_hours = _one(con, f"SELECT count(*) FROM rep_{tag}")[0]
    if not n_hours:
        return {}
    span = [lo - timedelta(hours=1), hi + timedelta(hours=1)]
    con.execute(f"""
        INSERT INTO telemetry_superseded
        SELECT t.*, f.ingest_id FROM telemetry t JOIN rep_{tag} r
          ON t.node_id = r.node_id AND date_trunc('hour', t.ts) = r.hour
          JOIN files_{tag} f ON f._f = r._f
        WHERE t.ts BETWEEN ? AND ?
    """, span)
    per_file = con.execute(f"""
        SELECT f._f, (SELECT count(*) FROM telemetry_superseded s WHERE s.superseded_by = f.ingest_id),
               (SELECT count(*) FROM rep_{tag} r WHERE r._f = f._f)
        FROM files_{tag} f WHERE f._f IN (SELECT _f FROM rep_{tag})
    """).fetchall()
    con.execute(f"""
        DELETE FROM telemetry USING rep_{tag} r
        WHERE telemetry.node_id = r.node_id AND date_trunc('hour', telemetry.ts) = r.hour
          AND telemetry.ts BETWEEN ? AND ?
    """, span)
    return {int(f): (int(n), int(h), f"late data: replaced {n} stored samples in {h} node-hour(s) with this file's samples")
            for f, n, h in per_file}


def _load(con, tag: str, default_interval_s: int | None) -> None:
    """Insert the good rows; update the inventory and the hours pool_hourly must refresh."""
    ok = f"ok_{tag}"
    con.execute(f"""
        INSERT INTO telemetry
        SELECT o.ts, o.node_id, o.pool, o.gpu_model, o.total_d::INTEGER, o.alloc_d::INTEGER, o.util_d, o.source,
               o.quality_flag, f.ingest_id
        FROM {ok} o JOIN files_{tag} f USING (_f)
    """)
    # The sampling interval drives coverage. Adapters of fixed-rate sources declare it; for
    # canonical files it is 3600 / (most samples the node sent in any one hour), snapped to a
    # round interval within 5 %: outages only ever lower a single hour's count, so one complete
    # hour in the file is enough. A node keeps the shortest interval any file showed.
    nice = "[" + ", ".join(str(v) for v in NICE_INTERVALS_S) + "]"
    raw = "(3600.0 / max(n))"
    estimate = (
        f"coalesce(list_max(list_filter({nice}, lambda v: v <= 1.05 * {raw} AND v >= 0.95 * {raw})), "
        f"greatest(1, round({raw})))::INTEGER"
    )
    interval = str(int(default_interval_s)) if default_interval_s else estimate
    con.execute(f"""
        CREATE TEMP TABLE ns_{tag} AS
        SELECT node_id, any_value(pool) AS pool, any_value(gpu_model) AS gpu_model,
               arg_max(total, hi)::INTEGER AS gpus_total, {interval} AS interval_s,
               min(lo) AS lo, max(hi) AS hi, any_value(source) AS source
        FROM (SELECT node_id, h, sum(n) AS n, min(lo) AS lo, max(hi) AS hi, any_value(pool) AS pool,
                     any_value(gpu_model) AS gpu_model, arg_max(total, hi) AS total, any_value(source) AS source
              FROM nh_{tag} GROUP BY node_id, h)
        GROUP BY node_id
    """)
    # Hours to refresh: the node-hours that got samples, plus hours whose *expected* samples
    # change: the span between a node's old life and the new samples (it is now alive there),
    # and a node's whole life when its sampling interval changes.
    con.execute(f"""
        INSERT INTO pool_hourly_dirty
        SELECT DISTINCT pool, to_timestamp(h * 3600) FROM nh_{tag}
        UNION
        SELECT s.pool, unnest(range(date_trunc('hour', least(s.lo, n.last_seen)),
                                    greatest(s.hi, n.first_seen) + INTERVAL 1 MICROSECOND, INTERVAL 1 HOUR))
        FROM ns_{tag} s JOIN nodes n USING (node_id)
        WHERE s.lo > n.last_seen OR s.hi < n.first_seen
        UNION
        SELECT n.pool, unnest(range(date_trunc('hour', least(s.lo, n.first_seen)),
                                    greatest(s.hi, n.last_seen) + INTERVAL 1 MICROSECOND, INTERVAL 1 HOUR))
        FROM ns_{tag} s JOIN nodes n USING (node_id)
        WHERE s.interval_s < n.sample_interval_s
    """)
    con.execute(f"""
        INSERT INTO nodes
        SELECT node_id, pool, gpu_model, gpus_total, interval_s, lo, hi, source
        FROM ns_{tag}
        ON CONFLICT (node_id) DO UPDATE SET
          gpus_total = CASE WHEN excluded.last_seen >= nodes.last_seen THEN excluded.gpus_total ELSE nodes.gpus_total END,
          sample_interval_s = least(nodes.sample_interval_s, excluded.sample_interval_s),
          first_seen = least(nodes.first_seen, excluded.first_seen),
          last_seen = greatest(nodes.last_seen, excluded.last_seen)
    """)
    con.execute(f"""
        INSERT INTO pools
        SELECT pool, any_value(gpu_model), min(lo), max(hi) FROM ns_{tag} GROUP BY pool
        ON CONFLICT (pool) DO UPDATE SET
          first_seen = least(pools.first_seen, excluded.first_seen),
          last_seen = greatest(pools.last_seen, excluded.last_seen)
    """)


def _quarantine(con, tag: str, staged: Staged, source: str) -> None:
    """One INSERT for every quarantined record (see the row-group pitfall in _prepare)."""
    detail_cases = " ".join(
        f"WHEN '{reason}' THEN '{fld}=' || coalesce(CAST(s.\"{fld}\" AS VARCHAR), 'null')"
        for reason, fld in REASONS.items()
        if fld
    )
    rejects = pa.table({
        "row_number": pa.array([r[0] for r in staged.rejects], pa.int64()),
        "reason": pa.array([r[1] for r in staged.rejects], pa.string()),
        "detail": pa.array([r[2] for r in staged.rejects], pa.string()),
        "raw": pa.array([r[3] for r in staged.rejects], pa.string()),
    })
    con.register(f"rej_{tag}", rejects)
    try:
        con.execute(f"""
            INSERT INTO quarantine
            SELECT f.ingest_id, ?, f.path, s.row_number, c.reason,
                   coalesce(c.detail, CASE c.reason {detail_cases} END),
                   json_remove(json_remove(json_remove(to_json(s), '$._k'), '$._f'), '$.row_number')::VARCHAR, now()
            FROM x_{tag} c JOIN {staged.relation} s ON s._k = c._k JOIN files_{tag} f ON f._f = s._f
            WHERE c.reason IS NOT NULL
            UNION ALL
            SELECT f.ingest_id, ?, f.path, row_number, reason, detail, raw, now()
            FROM rej_{tag}, (SELECT * FROM files_{tag} WHERE _f = 0) f
        """, [source, source])
    finally:
        con.unregister(f"rej_{tag}")


def _cleanup(con, tag: str, staged: Staged | None) -> None:
    con.execute(f"DROP VIEW IF EXISTS ok_{tag}")
    for name in ("x", "nexp", "pexp", "dk", "ovl", "rep", "ns", "nh", "files"):
        con.execute(f"DROP TABLE IF EXISTS {name}_{tag}")
    for obj in staged.to_drop if staged else []:
        kind, name = obj.split(" ", 1)
        if kind == "ARROW":
            con.unregister(name)
        else:
            con.execute(f"DROP {kind} IF EXISTS {name}")


def _single(con, staged: Staged, tag: str) -> Staged:
    """A one-file relation as a batch of one: every record gets file index `_f` = 0."""
    view = f"one_{tag}"
    con.execute(f"CREATE TEMP VIEW {view} AS SELECT *, 0 AS _f FROM {staged.relation}")
    staged.to_drop.insert(0, f"VIEW {view}")
    staged.relation = view
    return staged


def _files_table(con, tag: str, files: list[tuple[int, int, str]]) -> None:
    """files_<tag>: file index `_f` -> its ingest_id and path (rows, inventory and quarantine name their file)."""
    con.execute(f"CREATE TEMP TABLE files_{tag} (_f INTEGER, ingest_id BIGINT, path VARCHAR)")
    con.executemany(f"INSERT INTO files_{tag} VALUES (?, ?, ?)", files)


def _process(con, tag: str, staged: Staged, source: str, rules: IngestRules, now: datetime,
             results: dict[int, FileResult]) -> None:
    """Validate, reconcile and load the staged records of one file or a batch of node-disjoint files
    (inside the caller's transaction), and fill each file's counts. `_k >> 32` is a record's file."""
    _prepare(con, staged, source, rules, now, tag)
    _node_hours(con, tag)
    n_excluded = _one(con, f"SELECT count(*) FROM x_{tag}")[0]
    _check_inventory(con, tag, rules)
    _check_duplicates_in_file(con, tag)
    if _one(con, f"SELECT count(*) FROM x_{tag}")[0] != n_excluded:
        _node_hours(con, tag)  # rare: rows were excluded after the stats were taken
    replaced = _reconcile_with_stored(con, tag)
    _load(con, tag, staged.interval_s)
    _quarantine(con, tag, staged, source)
    if len(results) == 1:  # one file: count(*) reads Parquet metadata, not the rows
        n_in = {next(iter(results)): _one(con, f"SELECT count(*) FROM {staged.relation}")[0]}
    else:
        n_in = dict(con.execute(f"SELECT _f, count(*) FROM {staged.relation} GROUP BY _f").fetchall())
    excluded = {int(f): (int(q), int(d)) for f, q, d in con.execute(
        f"SELECT _k >> 32, count(*) FILTER (WHERE reason IS NOT NULL), count(*) FILTER (WHERE dup) "
        f"FROM x_{tag} WHERE _k >= 0 GROUP BY ALL").fetchall()}
    ids = {r.ingest_id: f for f, r in results.items()}
    reasons: dict[int, dict[str, int]] = {}
    for ingest_id, reason, n in con.execute(
        f"SELECT ingest_id, reason, count(*) FROM quarantine WHERE ingest_id IN (SELECT ingest_id FROM files_{tag}) "
        "GROUP BY ALL ORDER BY reason"
    ).fetchall():
        reasons.setdefault(ids[int(ingest_id)], {})[reason] = int(n)
    n_rej = len(staged.rejects)  # reader rejects: single files only
    for f, result in results.items():
        q, d = excluded.get(f, (0, 0))
        result.status = "loaded"
        result.rows_in = int(n_in.get(f, 0)) + n_rej
        result.rows_quarantined = q + n_rej
        result.rows_duplicate = d
        result.rows_loaded = result.rows_in - result.rows_quarantined - result.rows_duplicate
        result.rows_replaced, result.node_hours_replaced, result.note = replaced.get(f, (0, 0, None))
        result.reasons = reasons.get(f, {})


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    source: str = "canonical",
    options: SourceOptions | None = None,
    rules: IngestRules | None = None,
    force: bool = False,
    on_begin: Callable[[Path], None] | None = None,
) -> FileResult:
    """Ingest one file. Never raises for bad data: the outcome is in the result and in ingest_log."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")
    path = Path(path)
    options = options or SourceOptions()
    rules = rules or IngestRules()
    now = rules.now or datetime.now(timezone.utc)
    t0 = time.perf_counter()
    digest = size = None
    if path.is_file():
        digest, size = file_hash(path), path.stat().st_size
    ingest_id = _start_log(con, "telemetry", source, path, digest, size)
    result = FileResult(ingest_id=ingest_id, path=str(path), source=source, status="running")

    if digest is not None and not force:
        prev = _one(
            con,
            "SELECT ingest_id, rows_in FROM ingest_log WHERE kind = 'telemetry' AND source = ? AND content_hash = ? "
            "AND status = 'loaded' ORDER BY ingest_id LIMIT 1",
            [source, digest],
        )
        if prev is not None:
            result.status = "skipped_same_file"
            result.rows_in = result.rows_duplicate = int(prev[1] or 0)
            result.note = f"same content as ingest {prev[0]}: every row is a duplicate, nothing read"
            result.duration_s = time.perf_counter() - t0
            _finish_log(con, result)
            return result

    tag = f"i{ingest_id}"
    staged: Staged | None = None
    con.execute("BEGIN TRANSACTION")
    try:
        if on_begin is not None:
            on_begin(path)
        staged = _single(con, stage(con, source, path, options, tag), tag)
        _files_table(con, tag, [(0, ingest_id, str(path))])
        _process(con, tag, staged, source, rules, now, {0: result})
        result.duration_s = time.perf_counter() - t0
        _finish_log(con, result)
        _cleanup(con, tag, staged)
        con.execute("COMMIT")
    except FILE_ERRORS as exc:
        con.execute("ROLLBACK")
        _cleanup(con, tag, staged)
        message = str(exc) if isinstance(exc, SourceReadError) else f"{path}: {type(exc).__name__}: {exc}"
        result.status, result.error = "failed", message.splitlines()[0][:2000]
        result.duration_s = time.perf_counter() - t0
        _finish_log(con, result)
    except BaseException:
        con.execute("ROLLBACK")  # a bug, not bad data: nothing of the file lands, and it surfaces
        raise
    return result


def ingest_files(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[str | Path],
    source: str = "canonical",
    options: SourceOptions | None = None,
    rules: IngestRules | None = None,
    force: bool = False,
    on_file: Callable[[FileResult], None] | None = None,
    batch_files: int = 500,
) -> list[FileResult]:
    """Ingest files; a file that fails stops nothing else. Runs of small canonical Parquet files go
    through in batches of `batch_files` (warehouse/ingest_batch.py), every other file alone."""
    from warehouse.ingest_batch import batchable, ingest_parquet_batch

    mark_aborted(con)
    results: list[FileResult] = []
    pending: list[Path] = []

    def emit(rs: list[FileResult]) -> None:
        results.extend(rs)
        for r in rs:
            if on_file is not None:
                on_file(r)

    for p in map(Path, paths):
        if source == "canonical" and batch_files > 1 and batchable(p):
            pending.append(p)
            if len(pending) >= batch_files:
                emit(ingest_parquet_batch(con, pending, source=source, rules=rules, force=force))
                pending = []
            continue
        if pending:
            emit(ingest_parquet_batch(con, pending, source=source, rules=rules, force=force))
            pending = []
        emit([ingest_file(con, p, source=source, options=options, rules=rules, force=force)])
    if pending:
        emit(ingest_parquet_batch(con, pending, source=source, rules=rules, force=force))
    return results
