"""File-level ingest errors name the cause and the right line (empty, UTF-16, over-long line)."""
from __future__ import annotations

import gzip
from datetime import datetime, timezone
from pathlib import Path

import pytest

from warehouse.ingest import IngestRules, ingest_file
from warehouse.sources.text_checks import MAX_LINE_BYTES, overlong_line

RULES = IngestRules(now=datetime(2026, 3, 1, tzinfo=timezone.utc))
HEADER = "ts,node_id,pool,gpu_model,gpus_total,gpus_allocated,gpu_util\n"
ROW = "2026-01-01T00:00:00Z,n1,p1,H100,8,2,50\n"


def _ingest(con, path: Path):
    r = ingest_file(con, path, rules=RULES)
    assert r.status == "failed" and r.rows_loaded == 0
    assert con.execute("SELECT count(*) FROM telemetry").fetchall()[0][0] == 0
    assert "\n" not in r.error and len(r.error) < 600
    return r.error


def test_an_empty_file_says_it_is_empty(con, tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_bytes(b"")
    assert "the file is empty (0 bytes); a CSV starts with a header line naming ts, node_id" in _ingest(con, tmp_path / "e.csv")
    (tmp_path / "b.csv").write_text("\n \n")
    assert "only blank lines" in _ingest(con, tmp_path / "b.csv")


@pytest.mark.parametrize("encoding,expect", [("utf-16", "UTF-16 text (it starts with the byte-order mark FF FE)"),
                                             ("utf-16-le", "NUL byte at byte 2: it looks like UTF-16 text")])
def test_a_utf16_file_names_its_encoding_not_its_bytes(con, tmp_path: Path, encoding: str, expect: str) -> None:
    p = tmp_path / "u.csv.gz"
    with gzip.open(p, "wb") as fh:
        fh.write((HEADER + ROW * 3).encode(encoding))
    err = _ingest(con, p)
    assert expect in err and "save it as UTF-8" in err and " 2 0 2 6" not in err


def test_an_overlong_line_is_named_with_its_number_and_size(con, tmp_path: Path) -> None:
    p = tmp_path / "long.csv"
    long = "2026-01-01T00:00:00Z,n1,p1,H100,8,2," + "9" * (MAX_LINE_BYTES + 10) + "\n"
    p.write_text(HEADER + ROW * 5 + long + ROW)
    err = _ingest(con, p)
    assert f"line 7 is {len(long) - 1:,} bytes long, over the 2,000,000-byte limit" in err
    assert "999999" not in err  # never the line's text


def test_overlong_line_streams_across_chunks(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_bytes(b"a\n" + b"b" * (3 << 20) + b"\nc\n")  # a 3 MiB line crossing 1 MiB read chunks
    assert overlong_line(p) == (2, 3 << 20)
    assert overlong_line(p, limit=4 << 20) is None
