"""The API's read-only view of the published sheets directory.

Publishing (pricing.sheet) writes each file to a temp name and links it into place, and points
`LATEST` last, with an atomic replace. So the store only ever follows `LATEST`: a sheet being
written is invisible until it is complete, and the switch is one reference assignment. When the
new file cannot be read the store keeps the sheet it has and records why (`last_error`): the
API keeps serving the last good sheet. Sheets are immutable, so parsed sheets are cached by
version. Nothing here opens the warehouse.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from pricing.sheet import LATEST, sheet_name

log = logging.getLogger("idlecap.api")

HEADER_FIELDS = ("version", "generated_at", "valid_from", "valid_until", "data_through", "mlflow_run_id",
                 "forecast_id", "currency", "content_sha256")


class SheetUnreadable(ValueError):
    """A sheet file exists but is not a complete, well-formed price sheet."""


def parse_ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc)


@dataclass
class LoadedSheet:
    """One published sheet, parsed once: the exact file bytes (what GET returns) and an index."""

    version: int
    body: bytes
    header: dict[str, Any]
    items: list[dict[str, Any]]
    valid_until: datetime
    etag: str
    path: Path
    item_bytes: list[bytes] = field(default_factory=list)
    starts: list[datetime] = field(default_factory=list)

    def expired(self, now: datetime) -> bool:
        return now >= self.valid_until

    def max_age(self, now: datetime) -> int:
        return max(0, int((self.valid_until - now).total_seconds()))

    def summary(self) -> dict[str, Any]:
        return {**self.header, "items": len(self.items)}


def load_sheet(path: Path) -> LoadedSheet:
    """Parse and check a published JSON; the body is served byte for byte. Any defect -> SheetUnreadable."""
    path = Path(path)
    body = path.read_bytes()
    try:
        doc = orjson.loads(body)
        header = {k: doc[k] for k in HEADER_FIELDS}
        items = doc["items"]
        if not isinstance(items, list):
            raise TypeError("items is not a list")
        version = int(header["version"])
        valid_until = parse_ts(header["valid_until"])
        starts = [parse_ts(i["start"]) for i in items]
        item_bytes = [orjson.dumps(i) for i in items]
    except Exception as exc:  # noqa: BLE001 - whatever is wrong inside, the file is not a sheet we can serve
        raise SheetUnreadable(f"{path.name}: not a complete price sheet ({type(exc).__name__}: {exc})") from exc
    if path.name != f"{sheet_name(version)}.json":
        raise SheetUnreadable(f"{path.name}: file name does not match version {version}")
    return LoadedSheet(
        version=version, body=body, header=header, items=items, valid_until=valid_until,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"', path=path, item_bytes=item_bytes, starts=starts,
    )


class SheetStore:
    """Follows LATEST in `sheets_dir`; `refresh()` is cheap when nothing changed (one stat)."""

    def __init__(self, sheets_dir: Path, cache_size: int = 8):
        self.dir = Path(sheets_dir)
        self.current: LoadedSheet | None = None
        self.last_error: str | None = None
        self.loaded_at: datetime | None = None
        self._stamp: tuple[Any, ...] | None = None
        self._cache: OrderedDict[int, LoadedSheet] = OrderedDict()
        self._headers: dict[int, dict[str, Any]] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.refresh()

    def _latest_name(self) -> tuple[tuple[Any, ...] | None, str | None]:
        """(stamp, file name LATEST points at). The stamp covers LATEST and the file it names, so a
        file that arrives after LATEST (rsync order) or is repaired in place is picked up."""
        p = self.dir / LATEST
        try:
            st = p.stat()
            name = p.read_bytes().decode("utf-8", "replace").strip()
            stamp: tuple[Any, ...] = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            found = sorted(self.dir.glob("price-sheet-[0-9]*.json"))  # a directory from before LATEST existed
            if not found:
                return None, None
            name, stamp = found[-1].name, ("glob",)
        try:
            t = (self.dir / name).stat() if name and "/" not in name else None
            stamp += (name, t.st_ino, t.st_mtime_ns, t.st_size) if t else (name, None)
        except OSError:
            stamp += (name, None)
        return stamp, name

    def refresh(self) -> bool:
        """Switch to a newer complete sheet if LATEST names one; True when the sheet changed.

        Parsing happens outside the lock, so requests for other versions never wait on a reload."""
        stamp, name = self._latest_name()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        if name is None:
            return False
        try:
            if not name.startswith("price-sheet-") or "/" in name:
                raise SheetUnreadable(f"{LATEST} names {name[:80]!r}, not a sheet file")
            sheet = load_sheet(self.dir / name)
        except (OSError, SheetUnreadable) as exc:
            self.last_error = str(exc).replace(str(self.dir) + "/", "")
            log.error("keeping sheet v%s: %s", self.current.version if self.current else None, exc)
            return False
        if self.current is not None and sheet.version < self.current.version:
            self.last_error = f"LATEST points back to v{sheet.version} (serving v{self.current.version})"
            log.error(self.last_error)
            return False
        with self._lock:
            self._remember(sheet)
            self.current = sheet
        self.last_error = None
        self.loaded_at = datetime.now(timezone.utc)
        log.info("serving price sheet v%d (%d items)", sheet.version, len(sheet.items))
        return True

    def _remember(self, sheet: LoadedSheet) -> None:
        self._cache[sheet.version] = sheet
        self._cache.move_to_end(sheet.version)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        self._headers[sheet.version] = sheet.summary()

    def get(self, version: int) -> LoadedSheet | None:
        """A published version up to the current one (a newer file on disk is not published yet)."""
        cur = self.current
        if cur is None or version > cur.version or version < 1:
            return None
        if version == cur.version:
            return cur
        with self._lock:
            hit = self._cache.get(version)
            if hit is not None:
                self._cache.move_to_end(version)
                return hit
        path = self.dir / f"{sheet_name(version)}.json"
        try:
            sheet = load_sheet(path)
        except FileNotFoundError:
            return None
        except SheetUnreadable as exc:  # e.g. the broken file of a failed night: never published
            log.error("version %d: %s", version, exc)
            return None
        with self._lock:
            self._remember(sheet)
        return sheet

    def versions(self) -> list[int]:
        """Published versions, newest first (files up to the current version)."""
        cur = self.current
        if cur is None:
            return []
        out = []
        for p in self.dir.glob("price-sheet-[0-9]*.json"):
            try:
                v = int(p.stem.rsplit("-", 1)[1])
            except ValueError:
                continue
            if v <= cur.version:
                out.append(v)
        return sorted(out, reverse=True)

    def summary(self, version: int) -> dict[str, Any] | None:
        h = self._headers.get(version)
        if h is None:
            s = self.get(version)
            h = s.summary() if s else None
        return h
