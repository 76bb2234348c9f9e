"""Why a text file cannot be read as CSV, in words: empty, not UTF-8, or a line too long.

DuckDB's own messages for these name the wrong thing ("found column0" for an empty file, the
NUL-interleaved bytes of a UTF-16 header, "CSV Error on Line: 1" for an over-long line 2), so
the cause is looked for first (a few KB read) or after a failure (one streaming pass).
"""
from __future__ import annotations

import gzip
from pathlib import Path

#: DuckDB's read_csv refuses longer lines (max_line_size default, measured on 2.0).
MAX_LINE_BYTES = 2_000_000

_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def text_problem(path: Path, expected: str) -> str | None:
    """A one-line reason the file is not UTF-8 CSV text with a header, or None. Reads at most 64 KB."""
    try:
        with _open(path) as fh:
            head = fh.read(65536)
    except (OSError, EOFError) as exc:
        return f"cannot read file: {exc}"
    if not head:
        return f"the file is empty (0 bytes); a CSV starts with a header line naming {expected}"
    for bom, enc in _BOMS.items():
        if head.startswith(bom):
            return f"the file is {enc} text (it starts with the byte-order mark {bom.hex(' ').upper()}); save it as UTF-8"
    nul = head.find(b"\x00")
    if nul >= 0:
        hint = "UTF-16 text without a byte-order mark" if head[1::2].count(0) > len(head) // 4 or \
            head[0::2].count(0) > len(head) // 4 else "binary data"
        return f"the file has a NUL byte at byte {nul + 1}: it looks like {hint}, not UTF-8 CSV; save it as UTF-8"
    if not head.strip() and len(head) < 65536:
        return f"the file has only blank lines; a CSV starts with a header line naming {expected}"
    return None


def overlong_line(path: Path, limit: int = MAX_LINE_BYTES) -> tuple[int, int] | None:
    """(line number, bytes) of the first line longer than `limit`, streaming (memory stays small)."""
    line, length = 1, 0
    with _open(path) as fh:
        while chunk := fh.read(1 << 20):
            start = 0
            while (nl := chunk.find(b"\n", start)) >= 0:
                length += nl - start
                if length > limit:
                    return line, length
                line, length, start = line + 1, 0, nl + 1
            length += len(chunk) - start
            if length > limit:  # keep counting to report the whole line's size
                while chunk := fh.read(1 << 20):
                    nl = chunk.find(b"\n")
                    if nl >= 0:
                        return line, length + nl
                    length += len(chunk)
                return line, length
    return None


def csv_error(path: Path, exc: BaseException) -> str:
    """DuckDB's CSV error, with the real cause when a line is over the size limit; never the line's text."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "CSV Error" in first or "line size" in str(exc)[:2000].lower():
        try:
            found = overlong_line(path)
        except OSError:
            found = None
        if found is not None:
            line, size = found
            return (f"line {line} is {size:,} bytes long, over the {MAX_LINE_BYTES:,}-byte limit of a CSV line "
                    "(a telemetry record is under 200): a line break is probably missing; nothing of the file was loaded")
    return f"cannot read file: {first[:500]}"
