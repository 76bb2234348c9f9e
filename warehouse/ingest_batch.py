"""Many small Parquet files in one transaction: the same checks and promises, without the per-file cost.

A fleet's exporters write thousands of small files a night (a node-day each). One transaction
per file costs ~30 statements, so 20,000 files took half an hour. Here a batch of files is
staged as one relation with a file index per record and goes through the very pipeline a single
file does (`warehouse.ingest._process`), with every count kept per file: rows in = loaded +
quarantined + duplicate for each file, each with its own ingest_log row, quarantine rows naming
it, and telemetry rows carrying its ingest_id. The batch commits whole or not at all, so every
file does too, and a kill -9 leaves its files 'running' -> 'aborted' with nothing loaded.

A batch is only taken together when that cannot change any outcome: the files share one Parquet
schema, no node appears in two files (so in-file duplicates, the node's pool majority and
late-data replacement are per file as before), no new pool is reported with two GPU models, and
no file repeats content already loaded or elsewhere in the batch. Anything else, and any error,
goes through the one-file path, which isolates a bad file.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from warehouse.ingest import (
    FILE_ERRORS, FileResult, IngestRules, _cleanup, _files_table, _one, _process, file_hash, ingest_file,
)
from warehouse.sources.base import REQUIRED_COLUMNS
from warehouse.sources.canonical import Staged, _sql_str, canonical_columns

PARQUET_SUFFIXES = (".parquet", ".pq")
#: Files larger than this go alone (the one-file path streams big files without copying them).
MAX_FILE_BYTES = 16 << 20
#: A batch holds at most this many bytes of Parquet (its rows are copied once into a temp table).
MAX_BATCH_BYTES = 256 << 20


def batchable(path: Path) -> bool:
    try:
        return path.name.lower().endswith(PARQUET_SUFFIXES) and path.is_file() and path.stat().st_size <= MAX_FILE_BYTES
    except OSError:
        return False


def _signatures(con, paths: list[Path]) -> tuple[dict[Path, tuple], list[Path]]:
    """Each file's Parquet schema (names and physical/logical types), and the unreadable files."""
    def query(ps: list[Path]) -> dict[str, tuple]:
        lst = "[" + ", ".join(_sql_str(str(p)) for p in ps) + "]"
        rows = con.execute(
            f"SELECT file_name, list(name || ':' || coalesce(type, '') || ':' || coalesce(converted_type, '') || ':' "
            f"|| coalesce(logical_type::VARCHAR, '') ORDER BY name) FROM parquet_schema({lst}) GROUP BY file_name"
        ).fetchall()
        return {name: tuple(cols) for name, cols in rows}

    bad: list[Path] = []
    try:
        sig = query(paths)
    except FILE_ERRORS:  # some file is not Parquet: find which, one metadata read each
        sig = {}
        for p in paths:
            try:
                sig.update(query([p]))
            except FILE_ERRORS:
                bad.append(p)
    return {p: sig.get(str(p), ("?", str(p))) for p in paths if p not in bad}, bad


def _nodes_per_file(con, paths: list[Path]) -> dict[str, set[str]]:
    """The node ids in each file (one column scan for all), so a batch can hold one file per node."""
    if len(paths) < 2:
        return {}
    lst = "[" + ", ".join(_sql_str(str(p)) for p in paths) + "]"
    try:
        rows = con.execute(f"SELECT filename, list(DISTINCT node_id::VARCHAR) FROM read_parquet({lst}, filename = true, "
                           f"union_by_name = true) GROUP BY filename").fetchall()
    except FILE_ERRORS + (duckdb.BinderException,):
        return {}  # e.g. no node_id column: the batch checks catch it and the files go one by one
    return {name: set(x for x in ids if x is not None) for name, ids in rows}


def _log_running(con, source: str, files: list[tuple[Path, str, int]]) -> list[int]:
    ids = [int(r[0]) for r in con.execute(f"SELECT nextval('ingest_id_seq') FROM range({len(files)})").fetchall()]
    rows = pa.table({
        "ingest_id": pa.array(ids, pa.int64()), "file_path": [str(p) for p, _, _ in files],
        "content_hash": [d for _, d, _ in files], "size_bytes": pa.array([s for _, _, s in files], pa.int64()),
    })
    con.register("_batch_log", rows)
    try:
        con.execute(
            "INSERT INTO ingest_log (ingest_id, kind, source, file_path, content_hash, size_bytes, status, started_at) "
            "SELECT ingest_id, 'telemetry', ?, file_path, content_hash, size_bytes, 'running', now() FROM _batch_log",
            [source])
    finally:
        con.unregister("_batch_log")
    return ids


def _log_finished(con, results: list[FileResult]) -> None:
    cols = ["status", "rows_in", "rows_loaded", "rows_quarantined", "rows_duplicate", "rows_replaced",
            "node_hours_replaced", "error", "note", "duration_s"]
    t = pa.table({"ingest_id": pa.array([r.ingest_id for r in results], pa.int64()),
                  **{c: [getattr(r, c) for r in results] for c in cols}})
    con.register("_batch_done", t)
    try:
        con.execute(
            "UPDATE ingest_log SET " + ", ".join(f"{c} = u.{c}" for c in cols) + ", finished_at = now() "
            "FROM _batch_done u WHERE ingest_log.ingest_id = u.ingest_id")
    finally:
        con.unregister("_batch_done")


def _stage(con, tag: str, paths: list[Path], default_source: str) -> Staged | None:
    """The batch as temp table staged_<tag> (records of every file, `_f` = file index), or None when the
    files' shared schema lacks a required column (the one-file path then says so per file)."""
    lst = "[" + ", ".join(_sql_str(str(p)) for p in paths) + "]"
    scan = f"read_parquet({lst}, filename = true, file_row_number = true)"
    cols = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
    if any(c not in cols for c in REQUIRED_COLUMNS):
        return None
    select = ["(f._f::BIGINT << 32) + s.file_row_number AS _k", "f._f", "s.file_row_number + 1 AS row_number",
              *canonical_columns(cols, default_source, qualifier="s.")]
    rel = f"staged_{tag}"
    con.execute(f"CREATE TEMP TABLE {rel} AS SELECT {', '.join(select)} FROM {scan} s "
                f"JOIN files_{tag} f ON f.path = s.filename")
    return Staged(relation=rel, ts_type=cols["ts"], interval_s=None, rejects=[], to_drop=[f"TABLE {rel}"])


def _independent(con, tag: str, rel: str) -> bool:
    """No node in two files, and no new pool with two GPU models: per-file outcomes cannot change."""
    shared = _one(con, f"SELECT count(*) FROM (SELECT node_id::VARCHAR FROM {rel} WHERE node_id IS NOT NULL "
                       f"GROUP BY 1 HAVING count(DISTINCT _f) > 1)")[0]
    if shared:
        return False
    split = _one(con, f"SELECT count(*) FROM (SELECT pool::VARCHAR AS pool FROM {rel} WHERE pool IS NOT NULL "
                      f"GROUP BY 1 HAVING count(DISTINCT gpu_model::VARCHAR) > 1) b "
                      f"WHERE b.pool NOT IN (SELECT pool FROM pools)")[0]
    return not split


def _skip(con, source: str, files: list[tuple[Path, str, int]], prev: dict[str, tuple[int, int]]) -> dict[Path, FileResult]:
    """Files whose content was loaded before: every row a duplicate, nothing read (two statements for all)."""
    ids = _log_running(con, source, files)
    results = []
    for iid, (p, d, _) in zip(ids, files):
        first, n = prev[d]
        results.append(FileResult(ingest_id=iid, path=str(p), source=source, status="skipped_same_file", rows_in=n,
                                  rows_duplicate=n, note=f"same content as ingest {first}: every row is a duplicate, "
                                  "nothing read"))
    _log_finished(con, results)
    return {Path(r.path): r for r in results}


def _one_by_one(con, paths, source, rules, force) -> list[FileResult]:
    return [ingest_file(con, p, source=source, rules=rules, force=force) for p in paths]


def ingest_parquet_batch(
    con: duckdb.DuckDBPyConnection,
    paths: list[Path],
    source: str = "canonical",
    rules: IngestRules | None = None,
    force: bool = False,
    before_commit: Callable[[list[Path]], None] | None = None,
) -> list[FileResult]:
    """Ingest small canonical Parquet files together where that is safe; results in the order given.

    `before_commit` (for crash tests) is called with a batch's files once all its rows are written."""
    rules = rules or IngestRules()
    now = rules.now or datetime.now(timezone.utc)
    paths = [Path(p) for p in paths]
    out: dict[int, FileResult] = {}
    info: dict[int, tuple[Path, str, int]] = {}
    alone: set[int] = set()
    seen: set[str] = set()
    for i, p in enumerate(paths):
        try:
            d, size = file_hash(p), p.stat().st_size
        except OSError:
            alone.add(i)
            continue
        if d in seen:
            alone.add(i)  # the same content twice: the one-file path skips the repeat in its place
        else:
            info[i] = (p, d, size)
        seen.add(d)
    if not force and info:
        prev = {h: (int(i), int(n or 0)) for h, i, n in con.execute(
            "SELECT content_hash, min(ingest_id), arg_min(rows_in, ingest_id) FROM ingest_log "
            "WHERE kind = 'telemetry' AND source = ? AND status = 'loaded' AND content_hash IN (SELECT unnest(?)) "
            "GROUP BY content_hash", [source, [d for _, d, _ in info.values()]]).fetchall()}
        done = [i for i, (_, d, _) in info.items() if d in prev]
        if done:  # loaded on an earlier run: the outcome does not depend on order
            skipped = _skip(con, source, [info[i] for i in done], prev)
            for i in done:
                out[i] = skipped[info.pop(i)[0]]
    sig, unreadable = _signatures(con, [p for p, _, _ in info.values()]) if info else ({}, [])
    alone |= {i for i, (p, _, _) in info.items() if p in unreadable}
    # consecutive runs of one schema, in the order given: a file alone (unreadable, repeated) ends a run,
    # so every file sees the warehouse as it would file by file
    nodes = _nodes_per_file(con, [p for i, (p, _, _) in info.items() if i not in alone])
    run: list[int] = []
    run_bytes = 0
    run_nodes: set[str] = set()

    def flush() -> None:
        nonlocal run, run_bytes
        if run:
            res = _batch(con, [info[i] for i in run], source, rules, now, force, before_commit)
            out.update({i: res[info[i][0]] for i in run})
        run, run_bytes = [], 0
        run_nodes.clear()

    for i, p in enumerate(paths):
        if i in out:
            continue
        if i in alone:
            flush()
            out[i] = ingest_file(con, p, source=source, rules=rules, force=force)
            continue
        size, mine = info[i][2], nodes.get(str(p), set())
        # a node already in the run (its next day's file) starts a new batch: one file per node a batch
        if run and (sig[p] != sig[info[run[0]][0]] or run_bytes + size > MAX_BATCH_BYTES or mine & run_nodes):
            flush()
        run.append(i)
        run_bytes += size
        run_nodes.update(mine)
    flush()
    return [out[i] for i in range(len(paths))]


def _batch(con, files: list[tuple[Path, str, int]], source: str, rules: IngestRules, now: datetime,
           force: bool, before_commit: Callable[[list[Path]], None] | None = None) -> dict[Path, FileResult]:
    paths = [p for p, _, _ in files]
    if len(files) == 1:
        return {paths[0]: ingest_file(con, paths[0], source=source, rules=rules, force=force)}
    t0 = time.perf_counter()
    ids = _log_running(con, source, files)
    tag = f"b{ids[0]}"
    results = {i: FileResult(ingest_id=iid, path=str(p), source=source, status="running")
               for i, (iid, p) in enumerate(zip(ids, paths))}
    staged: Staged | None = None
    con.execute("BEGIN TRANSACTION")
    try:
        _files_table(con, tag, [(i, iid, str(p)) for i, (iid, p) in enumerate(zip(ids, paths))])
        staged = _stage(con, tag, paths, source)
        if staged is None or not _independent(con, tag, staged.relation):
            raise _NotBatchable
        _process(con, tag, staged, source, rules, now, results)
        per_file = (time.perf_counter() - t0) / len(files)
        for r in results.values():
            r.duration_s = per_file
        _log_finished(con, list(results.values()))
        _cleanup(con, tag, staged)
        if before_commit is not None:
            before_commit(paths)
        con.execute("COMMIT")
    except (_NotBatchable, *FILE_ERRORS):
        con.execute("ROLLBACK")
        _cleanup(con, tag, staged)
        # the batch left nothing behind but its 'running' log rows: the one-file path logs each file anew
        con.execute(f"DELETE FROM ingest_log WHERE ingest_id IN ({', '.join(map(str, ids))})")
        return {Path(r.path): r for r in _one_by_one(con, paths, source, rules, force)}
    except BaseException:
        con.execute("ROLLBACK")  # a bug, not bad data: nothing lands, the log rows read 'aborted' next run
        raise
    return {Path(r.path): r for r in results.values()}


class _NotBatchable(Exception):
    """The files cannot be taken together without changing an outcome."""
