"""The API's read-only view of the published sheets directory.

Publishing (pricing.sheet) writes each file to a temp name and links it into place, and points
`LATEST` last, with an atomic replace. So the store only ever follows `LATEST`: a sheet being
written is invisible until it is complete, and the switch is one reference assignment. When the
file LATEST names cannot be read, the store serves the newest readable version below it (at
start as on reload) and records why (`last_error`, `degraded`): a failed night or a truncated
file never leaves the API without the last good sheet. Sheets are immutable, so parsed sheets
(and both scopes' encoded views) are cached by version. Nothing here opens the warehouse.
"""
from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import orjson

from api.views import SheetView, build_views
from pricing.sheet import LATEST, sheet_name

log = logging.getLogger("idlecap.api")

HEADER_FIELDS = ("version", "generated_at", "valid_from", "valid_until", "data_through", "mlflow_run_id",
                 "forecast_id", "currency", "content_sha256")


_NAME = re.compile(r"price-sheet-([0-9]{6,})\.json")


class SheetUnreadable(ValueError):
    """A sheet file exists but is not a complete, well-formed price sheet."""


def parse_ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc)


@dataclass
class LoadedSheet:
    """One published sheet, parsed once: its header and items as published, and each scope's view
    (the bytes a GET returns, see api.views)."""

    version: int
    header: dict[str, Any]
    items: list[dict[str, Any]]
    valid_from: datetime
    valid_until: datetime
    path: Path
    views: dict[str, SheetView]
    starts: list[datetime] = field(default_factory=list)
    ends: list[datetime] = field(default_factory=list)

    def expired(self, now: datetime) -> bool:
        return now >= self.valid_until

    def max_age(self, now: datetime) -> int:
        return max(0, int((self.valid_until - now).total_seconds()))

    def view(self, scope: str) -> SheetView:
        return self.views["internal" if scope == "internal" else "customer"]


def load_sheet(path: Path, locations: Mapping[str, str] | None = None) -> LoadedSheet:
    """Parse and check a published JSON and encode both views. Any defect -> SheetUnreadable."""
    path = Path(path)
    body = path.read_bytes()
    try:
        doc = orjson.loads(body)
        header = {k: doc[k] for k in HEADER_FIELDS}
        items = doc["items"]
        if not isinstance(items, list):
            raise TypeError("items is not a list")
        version = int(header["version"])
        valid_from, valid_until = parse_ts(header["valid_from"]), parse_ts(header["valid_until"])
        starts = [parse_ts(i["start"]) for i in items]
        ends = [parse_ts(i["end"]) for i in items]
        views = build_views(doc, starts, ends, locations or {})
    except Exception as exc:  # noqa: BLE001 - whatever is wrong inside, the file is not a sheet we can serve
        raise SheetUnreadable(f"{path.name}: not a complete price sheet ({type(exc).__name__}: {exc})"[:400]) from exc
    if path.name != f"{sheet_name(version)}.json":
        raise SheetUnreadable(f"{path.name}: file name does not match version {version}")
    return LoadedSheet(version=version, header=header, items=items, valid_from=valid_from, valid_until=valid_until,
                       path=path, views=views, starts=starts, ends=ends)


def _version_of(name: str | None) -> int | None:
    m = _NAME.fullmatch(name or "")
    return int(m.group(1)) if m else None


class SheetStore:
    """Follows LATEST in `sheets_dir`; `refresh()` is cheap when nothing changed (one stat).

    When the file LATEST names cannot be read, the store serves the newest readable version up to
    it (on start as on reload), never one LATEST has not reached yet, and says so in `degraded`."""

    def __init__(self, sheets_dir: Path, cache_size: int = 8, locations: Mapping[str, str] | None = None):
        self.dir = Path(sheets_dir)
        self.locations = dict(locations or {})
        self.current: LoadedSheet | None = None
        self.last_error: str | None = None
        self.degraded: str | None = None  # why the sheet served is not the one LATEST names
        self.degraded_public: str | None = None  # the same for a public probe: no file names or parse errors
        self.loaded_at: datetime | None = None
        self._stamp: tuple[Any, ...] | None = None
        self._cache: OrderedDict[int, LoadedSheet] = OrderedDict()
        self._unreadable: dict[int, tuple[int, int] | None] = {}  # version -> file stamp when it failed to load
        self._headers: dict[tuple[int, str], dict[str, Any]] = {}
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

    def _load(self, path: Path) -> LoadedSheet:
        return load_sheet(path, self.locations)

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
            sheet = self._load(self.dir / name)
        except (OSError, SheetUnreadable) as exc:
            self.last_error = str(exc).replace(str(self.dir) + "/", "")[:400]
            fallback = self._newest_readable(below=_version_of(name))
            if fallback is None:
                log.error("keeping sheet v%s: %s", self.current.version if self.current else None, self.last_error)
                if self.current is not None:
                    self.degraded = f"{self.last_error}; serving v{self.current.version}"
                    self.degraded_public = f"the newest published sheet could not be read; serving v{self.current.version}"
                return False
            sheet = fallback
            self.degraded = f"{self.last_error}; serving v{sheet.version}, the newest readable sheet"
            self.degraded_public = (f"the newest published sheet could not be read; serving v{sheet.version}, "
                                    "the newest readable sheet")
            log.error("%s: serving v%d, the newest readable sheet", self.last_error, sheet.version)
            self._switch(sheet)
            return True
        if self.current is not None and sheet.version < self.current.version:
            self.last_error = f"LATEST points back to v{sheet.version} (serving v{self.current.version})"
            self.degraded = self.last_error
            self.degraded_public = f"the published sheet went back to an older version; serving v{self.current.version}"
            log.error(self.last_error)
            return False
        self._switch(sheet)
        self.last_error = self.degraded = self.degraded_public = None
        return True

    def _switch(self, sheet: LoadedSheet) -> None:
        with self._lock:
            self._remember(sheet)
            self.current = sheet
        self.loaded_at = datetime.now(timezone.utc)
        log.info("serving price sheet v%d (%d items)", sheet.version, len(sheet.items))

    def _newest_readable(self, below: int | None) -> LoadedSheet | None:
        """The newest readable sheet under `below` (the version LATEST names; None: any on disk) and
        newer than the one served."""
        floor = self.current.version if self.current is not None else 0
        for v in self._disk_versions():
            if below is not None and v >= below:
                continue
            if v <= floor:
                return None
            try:
                return self._load(self.dir / f"{sheet_name(v)}.json")
            except (OSError, SheetUnreadable) as exc:
                log.error("version %d: %s", v, exc)
        return None

    def _disk_versions(self) -> list[int]:
        out = []
        for p in self.dir.glob("price-sheet-[0-9]*.json"):
            v = _version_of(p.name)
            if v is not None:
                out.append(v)
        return sorted(out, reverse=True)

    def _remember(self, sheet: LoadedSheet) -> None:
        self._cache[sheet.version] = sheet
        self._cache.move_to_end(sheet.version)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        for scope, view in sheet.views.items():
            self._headers[(sheet.version, scope)] = view.summary

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
        stamp = _file_stamp(path)
        if version in self._unreadable and self._unreadable[version] == stamp:
            return None  # known broken and unchanged: no re-parse, no log line per request
        try:
            sheet = self._load(path)
        except FileNotFoundError:
            return None
        except SheetUnreadable as exc:  # e.g. the broken file of a failed night: never published
            log.error("version %d: %s (left out of the history until the file changes)", version, exc)
            self._unreadable[version] = stamp
            return None
        self._unreadable.pop(version, None)
        with self._lock:
            self._remember(sheet)
        return sheet

    def versions(self) -> list[int]:
        """Published versions, newest first (files up to the current version)."""
        cur = self.current
        if cur is None:
            return []
        return [v for v in self._disk_versions() if v <= cur.version
                and not (v in self._unreadable and self._unreadable[v] == _file_stamp(self.dir / f"{sheet_name(v)}.json"))]

    def summary(self, version: int, scope: str = "customer") -> dict[str, Any] | None:
        scope = "internal" if scope == "internal" else "customer"
        h = self._headers.get((version, scope))
        if h is None:
            s = self.get(version)
            h = s.view(scope).summary if s else None
        return h


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
        return (st.st_mtime_ns, st.st_size)
    except OSError:
        return None
