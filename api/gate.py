"""The one ASGI middleware in front of every route: request id, body limit, API key, access log.

Pure ASGI rather than BaseHTTPMiddleware or per-route dependencies: it costs a few microseconds
per request, which is most of the API's overhead over the bare app in bench/. The access log is
one JSON line per request with the key's id, never the key itself or any header value.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import sys
import time
from typing import Any, Awaitable, BinaryIO, Callable

import orjson
from fastapi import HTTPException

from api.keys import KeyRing

log = logging.getLogger("idlecap.api")

# Customer docs and the internal docs pages are public shells; the internal schema they load is not.
PUBLIC = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
                    "/internal/docs", "/internal/redoc"})
PUBLIC_PREFIX = "/docs/assets/"  # Swagger UI and ReDoc files, served from the installed package
_RID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SECRET_PARAM = re.compile(r"(?i)((?:api[_-]?key|key|token|secret|password)=)[^&]*")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def route_path(scope: Scope) -> str:
    """The path the router will match: without the root_path a proxy prefix adds (as Starlette strips it)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] or "/" if root and path.startswith(root) else path


def required_scope(path: str) -> str | None:
    """None for public paths; internal routes need an internal key; everything else a customer key."""
    if path in PUBLIC or (path.startswith(PUBLIC_PREFIX) and ".." not in path):
        return None
    return "internal" if path.startswith(("/v1/internal", "/internal")) else "customer"


class AccessLog:
    """One JSON line per request to a binary stream (stderr by default).

    Written to the stream's buffer and flushed by the API's reload loop (every reload_seconds)
    and at shutdown, not per request: a write syscall per request would cost more than the
    rest of the log line. Lines are never split; a crash can lose the last second of lines."""

    def __init__(self, stream: BinaryIO | None = None):
        self.stream = stream if stream is not None else sys.stderr.buffer
        self._second, self._ts = -1, ""

    def now(self) -> str:
        """The UTC time to the second, formatted once per second rather than per line."""
        t = int(time.time())
        if t != self._second:
            self._second, self._ts = t, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        return self._ts

    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(orjson.dumps(record) + b"\n")

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: logging must never take the API down
            pass


class BodyTooLarge(HTTPException):
    """An HTTPException so FastAPI's body parsing passes it on instead of turning it into a 400."""

    def __init__(self, limit: int):
        super().__init__(413, f"request bodies are limited to {limit} bytes")


class Gate:
    def __init__(self, app, keys: KeyRing, max_body_bytes: int = 16_384, access_log: AccessLog | None = None):
        self.app = app
        self.keys = keys
        self.max_body = max_body_bytes
        self.access_log = access_log
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()  # unique across workers and restarts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = scope["headers"]
        rid, presented, length = "", None, None
        for k, v in headers:  # one pass over the request headers (this runs on every request)
            if k == b"authorization":
                if presented is None:
                    a = v.decode("latin-1")
                    presented = a[7:].strip() if a[:7].lower() == "bearer " else ""
            elif k == b"x-api-key":
                if presented is None:
                    presented = v.decode("latin-1").strip()
            elif k == b"x-request-id":
                rid = v.decode("latin-1")
            elif k == b"content-length":
                length = v
        if not rid or not _RID.match(rid):
            rid = f"{self._id_prefix}{next(self._ids):08x}"
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["presented_key"] = presented  # public routes may still tell an internal caller apart (/readyz)
        rid_b = rid.encode()
        info = {"status": 500, "bytes": 0, "started": False}

        async def send_wrapped(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                info["status"], info["started"] = msg["status"], True
                msg["headers"] = [*msg.get("headers", []), (b"x-request-id", rid_b)]
            elif msg["type"] == "http.response.body":
                info["bytes"] += len(msg.get("body", b""))
            await send(msg)

        key_id = None
        try:
            need = required_scope(route_path(scope))
            if need is not None:
                rec = self.keys.check(presented or None)
                if rec is None:
                    await _error(send_wrapped, 401, "unauthorized",
                                 "a valid API key is required: send `Authorization: Bearer <key>`", rid,
                                 [(b"www-authenticate", b'Bearer realm="idlecap"')])
                    return
                key_id = rec.key_id
                state["key_id"], state["key_scope"] = key_id, rec.scope
                if not rec.allows(need):
                    await _error(send_wrapped, 403, "forbidden", f"this key's scope ({rec.scope}) cannot use {need} routes", rid)
                    return
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await _error(send_wrapped, 413, "body_too_large", f"request bodies are limited to {self.max_body} bytes", rid)
                return
            await self.app(scope, self._limited(receive), send_wrapped)
        except BodyTooLarge:
            if not info["started"]:
                await _error(send_wrapped, 413, "body_too_large", f"request bodies are limited to {self.max_body} bytes", rid)
        except Exception:
            # answered here, not by Starlette's error middleware: no trace leaks and the connection stays usable
            log.exception("unhandled error on %s %s (request %s)", scope["method"], scope["path"], rid)
            if not info["started"]:
                await _error(send_wrapped, 500, "internal_error", "internal error; quote the request_id to the operators", rid)
        finally:
            if self.access_log is not None:
                q = scope.get("query_string", b"")
                self.access_log.write({
                    "ts": self.access_log.now(), "request_id": rid,
                    "client": (scope.get("client") or ("", 0))[0], "method": scope["method"], "path": scope["path"],
                    "query": _SECRET_PARAM.sub(r"\1***", q.decode("latin-1"))[:512] if q else "",
                    "status": info["status"], "bytes": info["bytes"],
                    "ms": round((time.perf_counter() - t0) * 1000, 2), "key_id": key_id,
                })

    def _limited(self, receive: Receive) -> Receive:
        """Counts streamed (chunked) bodies too: Content-Length is only a claim."""
        seen = 0

        async def wrapped() -> dict[str, Any]:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return msg

        return wrapped


async def _error(send: Send, status: int, code: str, message: str, rid: str,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps({"error": code, "message": message, "request_id": rid})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
