"""The canonical telemetry format we document for fleet operators: Parquet or CSV.

Columns (names exact, order free): ts, node_id, pool, gpu_model, gpus_total, gpus_allocated,
gpu_util, source, quality_flag. `ts` must carry a timezone: a Parquet TIMESTAMP WITH TIME ZONE
column, or ISO-8601 text with `Z` or an offset in CSV. Optional columns may be absent.

Canonical files are staged directly in DuckDB (no Python pass over the rows) because they are
the high-volume path: a fleet's exporters write them every few minutes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from warehouse.sources.base import CANONICAL_COLUMNS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, SourceReadError
from warehouse.sources.text_checks import csv_error, text_problem

_ALL = tuple(dict.fromkeys(CANONICAL_COLUMNS + OPTIONAL_COLUMNS))


@dataclass
class Staged:
    """A file's records as a DuckDB relation named `relation`, before validation.

    The relation has `_k` (unique per record, for joins), `row_number` (the record's place in
    the file, for people: line for CSV, 1-based row for Parquet) and the canonical columns.
    """

    relation: str
    ts_type: str
    interval_s: int | None
    rejects: list[tuple[int, str, str, str]] = field(default_factory=list)
    to_drop: list[str] = field(default_factory=list)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def canonical_columns(cols: dict[str, str], default_source: str, qualifier: str = "") -> list[str]:
    """SELECT items for every canonical column: the file's own, the default source, or NULL."""
    out = []
    for c in _ALL:
        if c in cols:
            out.append(f'{qualifier}"{c}"')
        elif c == "source":
            out.append(f"{_sql_str(default_source)} AS source")
        else:
            out.append(f"NULL AS {c}")
    return out


def _is_csv(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz") or name.endswith(".tsv")


def stage_canonical(con: duckdb.DuckDBPyConnection, path: Path, default_source: str, tag: str) -> Staged:
    """Create view `staged_<tag>` over the file with every canonical column (NULL when absent)."""
    if not path.exists():
        raise SourceReadError(f"{path}: file does not exist")
    name = path.name.lower()
    rejects: list[tuple[int, str, str, str]] = []
    to_drop: list[str] = []
    try:
        if name.endswith(".parquet") or name.endswith(".pq"):
            scan = f"read_parquet({_sql_str(str(path))}, file_row_number = true)"
            cols = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
            row_number = "file_row_number + 1"
            key = "file_row_number"
        elif _is_csv(path):
            problem = text_problem(path, ", ".join(REQUIRED_COLUMNS))
            if problem:
                raise SourceReadError(f"{path}: {problem}")
            raw = f"csv_raw_{tag}"
            rej_t, rej_s = f"csv_rej_{tag}", f"csv_scan_{tag}"
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {raw} AS SELECT * FROM read_csv({_sql_str(str(path))}, "
                f"all_varchar = true, header = true, store_rejects = true, "
                f"rejects_table = '{rej_t}', rejects_scan = '{rej_s}')"
            )
            to_drop += [f"TABLE {raw}", f"TABLE {rej_t}", f"TABLE {rej_s}"]
            cols = {r[0]: r[1] for r in con.execute(f"DESCRIBE {raw}").fetchall()}
            # One record can fail several checks: one quarantine row per rejected line.
            lines = [
                (int(r[0]), r[1], r[2])
                for r in con.execute(
                    f"SELECT line, string_agg(DISTINCT error_type, '; '), any_value(csv_line) "
                    f"FROM {rej_t} GROUP BY line ORDER BY line"
                ).fetchall()
            ]
            for line, err, text in lines:
                rejects.append((line, "malformed_csv_line", f"line {line}: {err}", text))
            # rowid is contiguous in insertion (= file) order but starts at an offset inside a
            # transaction; the line of a parsed record = its position + header + rejects before it.
            base = con.execute(f"SELECT coalesce(min(rowid), 0) FROM {raw}").fetchall()[0][0]
            pos = f"(rowid - {base})"
            key = pos
            if lines:
                firsts = ", ".join(str(line - 1 - j) for j, (line, _, _) in enumerate(lines, start=1))
                row_number = f"{pos} + 2 + list_count(list_filter([{firsts}], lambda k: k <= {pos}))"
            else:
                row_number = f"{pos} + 2"
            scan = raw
        else:
            raise SourceReadError(
                f"{path}: unsupported file type for source 'canonical' (expected .parquet, .csv or .csv.gz)"
            )
    except duckdb.Error as exc:
        if _is_csv(path):
            raise SourceReadError(f"{path}: {csv_error(path, exc)}") from None
        raise SourceReadError(f"{path}: cannot read file: {str(exc).splitlines()[0][:500]}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise SourceReadError(
            f"{path}: missing required column(s) {', '.join(missing)}; found {', '.join(cols) or 'none'}"
        )
    select = [f"{key} AS _k", f"{row_number} AS row_number", *canonical_columns(cols, default_source)]
    view = f"staged_{tag}"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {', '.join(select)} FROM {scan}")
    to_drop.insert(0, f"VIEW {view}")
    return Staged(relation=view, ts_type=cols["ts"], interval_s=None, rejects=rejects, to_drop=to_drop)
