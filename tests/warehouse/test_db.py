"""Opening the warehouse: resources from settings, and one clear line when another process holds it."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from warehouse.db import Resources, WarehouseBusy, connect

REPO = Path(__file__).resolve().parents[2]


def hold(db: Path, seconds: float, purpose: str = "ingest") -> subprocess.Popen:
    """A real second process that opens the warehouse for writing and keeps it for `seconds`."""
    code = (f"import sys, time; sys.path.insert(0, {str(REPO)!r}); from warehouse.db import connect; "
            f"c = connect({str(db)!r}, purpose={purpose!r}); print('held', flush=True); time.sleep({seconds}); c.close()")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_reader_gets_one_line_naming_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    connect(db).close()
    p = hold(db, 30)
    try:
        t0 = time.monotonic()
        with pytest.raises(WarehouseBusy) as err:
            connect(db, read_only=True, wait_s=0.6)
        waited = time.monotonic() - t0
    finally:
        p.kill()
        p.wait()
    msg = str(err.value)
    assert msg.startswith(f"warehouse busy: ingest, PID {p.pid}, since ") and "UTC" in msg
    assert "gave up after 0.6 s" in msg and "\n" not in msg
    assert waited >= 0.5
    assert err.value.holder["purpose"] == "ingest"


def test_an_opener_waits_for_the_holder_and_says_so_once(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    connect(db).close()
    said: list[str] = []
    p = hold(db, 1.5, purpose="nightly")
    try:
        con = connect(db, wait_s=30, on_wait=said.append)  # a writer too: waits, then gets in
    finally:
        p.wait()
    assert con.execute("SELECT 42").fetchall() == [(42,)]
    con.close()
    assert len(said) == 1 and said[0].startswith(f"warehouse busy: nightly, PID {p.pid}")


def test_a_stale_note_is_not_trusted(tmp_path: Path) -> None:
    """The note names PID 1 (another writer long gone); the lock's real PID is reported instead."""
    db = tmp_path / "w.duckdb"
    connect(db).close()
    p = hold(db, 30)
    Path(f"{db}.holder.json").write_text('{"purpose": "old", "pid": 1, "since": "yesterday"}')
    try:
        with pytest.raises(WarehouseBusy, match=rf"held by PID {p.pid} \(not an idlecap writer"):
            connect(db, read_only=True)
    finally:
        p.kill()
        p.wait()


def test_resources_are_applied(tmp_path: Path) -> None:
    con = connect(tmp_path / "w.duckdb", resources=Resources("512MB", str(tmp_path / "spill"), 1))
    limit, = con.execute("SELECT current_setting('memory_limit')").fetchall()[0]
    threads, = con.execute("SELECT current_setting('threads')").fetchall()[0]
    spill, = con.execute("SELECT current_setting('temp_directory')").fetchall()[0]
    assert limit.replace(" ", "") in ("488.2MiB", "512.0MB", "488.3MiB") and int(threads) == 1
    assert spill == str(tmp_path / "spill") and (tmp_path / "spill").is_dir()
