"""Opening the warehouse and applying versioned migrations (warehouse/migrations/NNNN_name.sql).

DuckDB lets one read-write process hold the file, and no other process in while it does (readers
included). So every writer leaves a note next to the file (`<db>.holder.json`: what it is doing,
its PID, since when), and an opener that finds the file locked waits up to `wait_s`, saying once
who holds it ("warehouse busy: ingest, PID 4242, since 2026-11-30 02:00:13 UTC"), instead of
failing with DuckDB's lock traceback.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


@dataclass(frozen=True)
class Resources:
    """DuckDB's memory cap, spill directory and threads: big refreshes spill instead of growing."""

    memory_limit: str | None = None
    temp_directory: str | None = None
    threads: int | None = None


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse file for writing, and it was not released in time."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder or {}


def migrations() -> list[tuple[int, str, Path]]:
    out = []
    for p in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        out.append((int(p.name[:4]), p.stem[5:], p))
    return out


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply every migration newer than the database, each in its own transaction."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, "
        "applied_at TIMESTAMPTZ DEFAULT current_timestamp)"
    )
    done = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, name, path in migrations():
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(path.read_text())
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()
    return int(row[0][0])


def holder_path(path: str | Path) -> Path:
    return Path(f"{path}.holder.json")


def _write_holder(path: Path, purpose: str) -> None:
    note = {"purpose": purpose, "pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
    tmp = holder_path(path).with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(note))
        os.replace(tmp, holder_path(path))
    except OSError:  # a read-only directory must not stop the writer; the message is then less precise
        pass


_LOCK_PID = re.compile(r"\(PID (\d+)\)")


def _lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "Could not set lock on file" in str(exc)


def busy_message(path: str | Path, exc: BaseException | None = None) -> tuple[str, dict]:
    """One line saying who holds the warehouse: the holder's note when its PID is the lock's."""
    m = _LOCK_PID.search(str(exc)) if exc is not None else None
    pid = int(m.group(1)) if m else None
    try:
        note = json.loads(holder_path(path).read_text())
    except (OSError, ValueError):
        note = {}
    if pid is not None and note.get("pid") == pid:
        return f"warehouse busy: {note.get('purpose', 'a writer')}, PID {pid}, since {note.get('since', '?')}", note
    who = f"PID {pid}" if pid is not None else "another process"
    return f"warehouse busy: held by {who} (not an idlecap writer that said what it does)", {"pid": pid}


def connect(
    path: str | Path,
    read_only: bool = False,
    resources: Resources | None = None,
    purpose: str = "idlecap",
    wait_s: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (creating and migrating it unless read-only). All times are UTC.

    When another process holds the file, wait up to `wait_s` seconds (calling `on_wait` once with
    the one-line reason), then raise WarehouseBusy with that line."""
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist yet: run `idlecap ingest` first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(0.0, wait_s)
    told = False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if not _lock_conflict(exc):
                raise
            message, note = busy_message(path, exc)
            if time.monotonic() >= deadline:
                waited = f"; gave up after {wait_s:g} s" if wait_s > 0 else ""
                raise WarehouseBusy(message + waited, note) from None
            if not told and on_wait is not None:
                on_wait(message)
                told = True
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
    con.execute("SET TimeZone = 'UTC'")
    r = resources or Resources()
    if r.memory_limit:
        con.execute(f"SET memory_limit = '{r.memory_limit}'")
    if r.temp_directory:
        Path(r.temp_directory).mkdir(parents=True, exist_ok=True)
        quoted = str(r.temp_directory).replace("'", "''")
        con.execute(f"SET temp_directory = '{quoted}'")
    if r.threads:
        con.execute(f"SET threads = {int(r.threads)}")
    if not read_only:
        _write_holder(path, purpose)
        migrate(con)
    return con
