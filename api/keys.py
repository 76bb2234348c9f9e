"""API keys: stored hashed in a small JSON file, checked in constant time.

A key reads `ick_<key_id>_<secret>`. Only SHA-256 of the secret is stored: secrets are 256 random
bits, so a slow password hash would add latency to every request without adding safety. The
key_id finds the record without comparing against every key; the secret is compared with
`hmac.compare_digest`, and an unknown key_id is compared against a dummy hash so that a miss
costs the same as a wrong secret. The file is written atomically (0600) and re-read by the API
when it changes, so keys created or revoked while the API runs take effect without a restart.
The API remembers keys it has verified (until the file changes), so a client's later requests
skip the hash: a miss, which is all a guesser ever gets, still takes the constant-time path.
"""
from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("idlecap.api")
SCOPES = ("customer", "internal")
PREFIX = "ick"
_KEY_RE = re.compile(r"^ick_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_DUMMY = hashlib.sha256(b"idlecap-no-such-key").hexdigest()


class KeyFileError(ValueError):
    """The key file cannot be read or has a malformed record."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scope: str
    created_at: str
    sha256: str
    revoked_at: str | None = None

    def allows(self, scope: str) -> bool:
        """internal keys can do what customer keys can, not the other way round."""
        return self.revoked_at is None and (self.scope == scope or self.scope == "internal")

    def public(self) -> dict[str, str | None]:
        return {"key_id": self.key_id, "name": self.name, "scope": self.scope, "created_at": self.created_at,
                "revoked_at": self.revoked_at}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def read_keys(path: Path) -> dict[str, ApiKey]:
    """All records by key_id; a missing file means no keys (every request is refused)."""
    p = Path(path)
    if not p.exists():
        return {}
    try:
        raw = json.loads(p.read_text() or "{}")
        return {r["key_id"]: ApiKey(**r) for r in raw.get("keys", [])}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise KeyFileError(f"{p}: not a valid idlecap key file ({type(exc).__name__}: {str(exc)[:200]})") from exc


def _write_keys(path: Path, keys: dict[str, ApiKey]) -> None:
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    os.fchmod(fd, 0o600)  # hashes only, but nobody else needs to read them
    with os.fdopen(fd, "w") as fh:
        json.dump({"keys": [k.__dict__ for k in keys.values()]}, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)


class _Locked:
    """An exclusive lock next to the key file, so two `api-key` commands never lose a write."""

    def __init__(self, path: Path):
        self.lock = Path(path).with_name(Path(path).name + ".lock")

    def __enter__(self):
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        self.fh = self.lock.open("a")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def create_key(path: Path, scope: str, name: str = "") -> tuple[str, ApiKey]:
    """A new key: returns (the key, shown once and never stored, its record)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    with _Locked(path):
        keys = read_keys(path)
        key_id = secrets.token_hex(6)
        while key_id in keys:
            key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        rec = ApiKey(key_id=key_id, name=name, scope=scope, sha256=_hash(secret),
                     created_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        keys[key_id] = rec
        _write_keys(path, keys)
    return f"{PREFIX}_{key_id}_{secret}", rec


def revoke_key(path: Path, key_id: str) -> ApiKey:
    with _Locked(path):
        keys = read_keys(path)
        if key_id not in keys:
            raise KeyError(f"no key {key_id!r} in {path}")
        rec = keys[key_id]
        if rec.revoked_at is None:
            rec = ApiKey(**{**rec.__dict__, "revoked_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
            keys[key_id] = rec
            _write_keys(path, keys)
    return rec


def verify(keys: dict[str, ApiKey], presented: str | None) -> ApiKey | None:
    """The record of a valid, unrevoked key, else None; timing does not depend on which part was wrong."""
    m = _KEY_RE.match(presented or "")
    key_id, secret = (m.group(1), m.group(2)) if m else ("", presented or "")
    rec = keys.get(key_id)
    ok = hmac.compare_digest(_hash(secret), rec.sha256 if rec else _DUMMY)
    return rec if ok and rec is not None and rec.revoked_at is None else None


class KeyRing:
    """The API's view of the key file, re-read when the file changes (checked by `refresh`).

    At start a file that cannot be read is an error (`KeyFileError`): better no API than one that
    refuses every key. While running, a broken, unreadable or deleted file keeps the last good keys
    (a bad edit must not lock every customer out; to refuse everyone, revoke the keys or write an
    empty key list), logs the problem once per distinct problem and reports it in `error`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self.keys: dict[str, ApiKey] = {}
        self.error: str | None = None
        self.error_public: str | None = None  # the same for a public probe: not the file's contents or key count
        self._verified: dict[str, ApiKey] = {}  # presented key -> record, for keys that passed `verify`
        self._loaded_from_file = False
        try:
            self.keys = read_keys(self.path)
        except OSError as exc:
            raise KeyFileError(f"{self.path}: cannot be read ({exc.strerror or exc})") from exc
        self._loaded_from_file = self.path.exists()
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
            return (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            return None

    def refresh(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        if stamp is None:
            if self._loaded_from_file:
                self._problem(f"{self.path.name} is missing; keeping the {len(self.keys)} key(s) loaded before")
            return
        try:
            keys = read_keys(self.path)
        except (KeyFileError, OSError) as exc:  # keep the keys we had: a bad edit must not lock everyone out
            why = str(exc).replace(str(self.path), self.path.name)
            self._problem(f"{why[:300]}; keeping the {len(self.keys)} key(s) loaded before")
            return
        self.keys, self._verified = keys, {}  # revocations take effect: forget what was verified
        self._loaded_from_file = True
        if self.error is not None:
            log.info("%s is readable again (%d keys)", self.path.name, len(self.keys))
        self.error = self.error_public = None

    def _problem(self, message: str) -> None:
        if message != self.error:  # once per distinct problem, not once per reload tick
            log.error("API keys: %s", message)
        self.error = message
        self.error_public = "the API key file could not be read; the keys loaded before stay in use"

    def check(self, presented: str | None) -> ApiKey | None:
        if presented is not None:
            hit = self._verified.get(presented)
            if hit is not None:
                return hit
        rec = verify(self.keys, presented)
        if rec is not None and len(self._verified) < 10_000:
            self._verified[presented] = rec
        return rec
