"""The two routes clients poll (`GET /v1/price-sheet`, `GET /v1/prices`) as plain functions.

Each returns a `Reply` (status, headers, body). `FastGets` answers exact GETs of these paths
straight from the ASGI scope, without FastAPI's routing and parameter machinery (about 150 us
of a 200 us request here, see bench/api_serving.py); the FastAPI routes call the same functions,
so the behaviour, validation limits and OpenAPI documentation are one. Query validation is the
same pydantic model either way. Bodies come pre-encoded per (sheet version, key scope) from the
store; /v1/prices pages are cached per (sheet version, scope, query string): sheets are
immutable, so a cached page is never stale.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

import orjson
from pydantic import ValidationError

from api import schemas
from api.gate import route_path
from api.store import LoadedSheet, SheetStore

JSON = b"application/json"
Headers = list[tuple[bytes, bytes]]


MAX_INM = 1024  # If-None-Match, as the FastAPI routes declare it
MAX_ECHO = 64  # characters of a client's own input (a parameter name, a value) an error repeats
MAX_LIST = 20  # entries of a list an error's detail carries
MAX_ERROR_BYTES = 8192


class ApiError(Exception):
    """An error reply with a stable code; rendered as {"error", "message", "request_id", "detail"}."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.detail, self.headers = status, code, message, detail, headers


def clip(text: str, n: int = MAX_ECHO) -> str:
    """A client's string as an error may repeat it: at most n characters."""
    text = str(text)
    return text if len(text) <= n else text[:n] + f"...({len(text):,} chars)"


def _bounded(obj: Any, depth: int = 0) -> Any:
    if isinstance(obj, str):
        return clip(obj, 200)
    if isinstance(obj, list):
        return [_bounded(x, depth + 1) for x in obj[:MAX_LIST if depth else 50]]
    if isinstance(obj, dict):
        return {clip(str(k), MAX_ECHO): _bounded(v, depth + 1) for k, v in list(obj.items())[:MAX_LIST]}
    return obj


def error_doc(code: str, message: str, request_id: str | None, detail: Any = None) -> dict[str, Any]:
    """The one error shape, bounded: no client input can make an error body large."""
    body: dict[str, Any] = {"error": code, "message": clip(message, 500), "request_id": request_id}
    if detail is not None:
        body["detail"] = _bounded(detail)
        if len(orjson.dumps(body)) > MAX_ERROR_BYTES:
            body["detail"] = None
    return body


@dataclass
class Reply:
    status: int
    headers: Headers
    body: bytes = b""


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def current(store: SheetStore) -> LoadedSheet:
    s = store.current
    if s is None:
        raise ApiError(503, "no_sheet", "no price sheet has been published yet", headers={"Retry-After": "60"})
    return s


def sheet_headers(sheet: LoadedSheet, now: datetime) -> Headers:
    return [(b"idlecap-sheet-version", str(sheet.version).encode()),
            (b"idlecap-sheet-status", b"expired" if sheet.expired(now) else b"fresh")]


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison, as RFC 9110 asks for If-None-Match; `*` matches any current sheet."""
    if not if_none_match:
        return False
    if if_none_match == etag:  # what a polling client sends back
        return True
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def token(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def untoken(tok: str) -> dict[str, Any]:
    try:
        out = orjson.loads(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
        if not isinstance(out, dict):
            raise ValueError
        return out
    except (ValueError, orjson.JSONDecodeError):
        raise ApiError(422, "invalid_page_token", "page_token is not one this API issued; start again without it") from None


def validation_error(exc: ValidationError, where: str) -> ApiError:
    """The same 422 shape as FastAPI's request validation errors."""
    detail = [{"field": clip(".".join([where, *(str(p) for p in e.get("loc", ()))]), MAX_ECHO + 8),
               "message": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()[:MAX_LIST]]
    if any(d["type"] == "extra_forbidden" for d in detail):
        for d in detail:
            if d["type"] == "extra_forbidden":
                d["message"] = "unknown query parameter"
    msg = "; ".join(f"{d['field']}: {d['message']}" for d in detail[:5])
    return ApiError(422, "invalid_request", msg or "invalid request", detail)


def check_inm(if_none_match: str | None) -> None:
    if if_none_match is not None and len(if_none_match) > MAX_INM:
        raise ApiError(422, "invalid_request", f"header.if-none-match: at most {MAX_INM} characters",
                       [{"field": "header.if-none-match", "message": f"at most {MAX_INM} characters",
                         "type": "string_too_long"}])


def no_query(qs: bytes | str) -> None:
    """Routes without query parameters refuse any, with the names cut short."""
    if qs:
        qs = qs.decode("latin-1") if isinstance(qs, bytes) else qs
        names = sorted({k for k, _ in parse_qsl(qs, keep_blank_values=True)} or {qs})
        unknown(names, frozenset())


def unknown(names: list[str], allowed: frozenset[str]) -> None:
    bad = sorted(set(names) - allowed)
    if bad:
        shown = [clip(n) for n in bad[:5]] + ([f"... {len(bad) - 5} more"] if len(bad) > 5 else [])
        takes = f"this route takes {sorted(allowed)}" if allowed else "this route takes no query parameters"
        raise ApiError(422, "invalid_request", f"unknown query parameter(s) {shown}; {takes}",
                       [{"field": f"query.{n}", "message": "unknown query parameter", "type": "extra_forbidden"}
                        for n in shown])


_heads: dict[tuple[int, str], tuple[int, Headers, Headers]] = {}


def _sheet_heads(s: LoadedSheet, scope: str) -> tuple[Headers, Headers]:
    """The 304 and 200 headers of the current sheet for a scope, built once a second (max-age counts down)."""
    second = int(time.time())
    hit = _heads.get((s.version, scope))
    if hit is not None and hit[0] == second:
        return hit[1], hit[2]
    now, v = now_utc(), s.view(scope)
    # private: answers need a key, so a shared cache must not hand them to others
    cc = b"no-cache" if s.expired(now) else f"private, max-age={s.max_age(now)}".encode()
    h304 = [(b"etag", v.etag.encode()), (b"cache-control", cc), *sheet_headers(s, now)]
    h200 = [(b"content-type", JSON), *h304]
    if len(_heads) > 16:
        _heads.clear()
    _heads[(s.version, scope)] = (second, h304, h200)
    return h304, h200


def price_sheet_reply(store: SheetStore, if_none_match: str | None, scope: str = "customer", qs: bytes = b"") -> Reply:
    """The current sheet as this key's scope sees it; cacheable until valid_until."""
    if if_none_match is not None and len(if_none_match) > MAX_INM:
        check_inm(if_none_match)
    if qs:
        no_query(qs)
    s = current(store)
    v = s.view(scope)
    h304, h200 = _sheet_heads(s, scope)
    if etag_matches(if_none_match, v.etag):
        return Reply(304, h304)
    return Reply(200, h200, v.body)


def _query_dict(qs: bytes) -> dict[str, Any]:
    """Filters repeat or comma-separate; any other parameter once. An empty filter or a repeated
    parameter is refused rather than quietly ignored or overwritten."""
    out: dict[str, Any] = {}
    for k, v in parse_qsl(qs.decode("latin-1"), keep_blank_values=True):
        if k in schemas.PricesQuery.LIST_FIELDS:
            vals = [x.strip() for x in v.split(",") if x.strip()]
            if not vals:
                raise _bad(k, f"{clip(k)} is empty: leave it out to match everything")
            out.setdefault(k, []).extend(vals)
        elif k in out:
            raise _bad(k, f"{clip(k)} is given more than once")
        else:
            if k in schemas.PricesQuery.FIELDS and _PLUS_AS_SPACE.search(v):
                raise _bad(k, f"{clip(k)}: {clip(v)!r} has a space before its UTC offset: a '+' in a URL query "
                              "is read as a space, so send it as %2B (or use Z)")
            out[k] = v
    return out


_PLUS_AS_SPACE = re.compile(r"T[0-9:.]+ [0-9]{2}:?[0-9]{2}$")


def _bad(name: str, message: str) -> ApiError:
    return ApiError(422, "invalid_request", message,
                    [{"field": f"query.{clip(name)}", "message": message, "type": "value_error"}])


class PricesPager:
    """`GET /v1/prices`: validate, filter, paginate. First pages are cached per (version, query
    string) up to `cache_bytes`; pages reached with a token (pinned to their version) are not."""

    def __init__(self, store: SheetStore, page_size: int, cache_bytes: int = 32 << 20):
        self.store, self.page_size, self.cache_bytes = store, page_size, cache_bytes
        self.cache: OrderedDict[tuple[int, str, bytes], bytes] = OrderedDict()
        self.cached = 0

    def reply(self, qs: bytes, scope: str = "customer") -> Reply:
        s = current(self.store)
        key = (s.version, scope, qs)
        body = self.cache.get(key)
        if body is None:
            s, body, cacheable = self._render(s, qs, scope)
            if cacheable and len(body) <= self.cache_bytes // 8:
                self.cache[key] = body
                self.cached += len(body)
                while self.cached > self.cache_bytes:
                    self.cached -= len(self.cache.popitem(last=False)[1])
        else:
            self.cache.move_to_end(key)
        return Reply(200, [(b"content-type", JSON), *sheet_headers(s, now_utc())], body)

    def _render(self, s: LoadedSheet, qs: bytes, scope: str) -> tuple[LoadedSheet, bytes, bool]:
        qd = _query_dict(qs)
        unknown(list(qd), schemas.PricesQuery.FIELDS)
        try:
            q = schemas.PricesQuery.model_validate(qd)
        except ValidationError as exc:
            raise validation_error(exc, "query") from None
        filters = {"gpu_model": q.gpu_model, "region": q.region, "pool": q.pool, "product": q.product}
        filters = {k: set(v) if v else None for k, v in filters.items()}
        fkey = hashlib.sha256(orjson.dumps([sorted(v) if v else None for v in filters.values()]
                                           + [str(q.start_from), str(q.start_to)])).hexdigest()[:12]
        offset = 0
        if q.page_token:
            t = untoken(q.page_token)
            if t.get("f") != fkey or not isinstance(t.get("v"), int) or not isinstance(t.get("o"), int) or t["o"] < 0:
                raise ApiError(422, "invalid_page_token", "page_token belongs to other filters; start again without it")
            pinned = self.store.get(t["v"])  # the version the walk started on, even after a switch
            if pinned is None:
                raise ApiError(410, "page_token_expired", f"sheet v{t['v']} is no longer available; start again")
            s, offset = pinned, t["o"]
        size = q.limit or self.page_size
        sf, st = q.start_from, q.start_to
        active = [(k, v) for k, v in filters.items() if v is not None]
        match = [i for i, it in enumerate(s.items)
                 if all(it[k] in v or (k == "gpu_model" and it.get("gpu_class") in v) for k, v in active)
                 and (sf is None or s.starts[i] >= sf) and (st is None or s.starts[i] < st)]
        page = match[offset:offset + size]
        nxt = token({"v": s.version, "o": offset + size, "f": fkey}) if offset + size < len(match) else None
        h = s.header
        head = orjson.dumps({"sheet_version": s.version, "valid_from": h["valid_from"], "valid_until": h["valid_until"],
                             "currency": h["currency"], "total": len(match), "next_page_token": nxt})
        item_bytes = s.view(scope).item_bytes
        return s, head[:-1] + b',"items":[' + b",".join(item_bytes[i] for i in page) + b"]}", not q.page_token


def error_body(exc: ApiError, request_id: str | None) -> bytes:
    return orjson.dumps(error_doc(exc.code, exc.message, request_id, exc.detail))


Send = Callable[[dict[str, Any]], Awaitable[None]]


async def send_reply(send: Send, r: Reply, head: bool = False) -> None:
    """HEAD gets the GET's headers without the body; a 304 has no Content-Length (RFC 9110 8.6)."""
    length = [] if r.status == 304 else [(b"content-length", str(len(r.body)).encode())]
    await send({"type": "http.response.start", "status": r.status, "headers": [*r.headers, *length]})
    await send({"type": "http.response.body", "body": b"" if head else r.body})


class FastGets:
    """ASGI: exact GETs of the polled routes answered here; everything else goes to the FastAPI app."""

    def __init__(self, app, store: SheetStore, pager: PricesPager):
        self.app, self.store, self.pager = app, store, pager

    async def __call__(self, scope: dict[str, Any], receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path = route_path(scope)
            if path == "/v1/price-sheet" or path == "/v1/prices":
                key_scope = scope.get("state", {}).get("key_scope", "customer")
                try:
                    if path == "/v1/prices":
                        qs = scope["query_string"]
                        # a token may pin an older version that has to be read from disk: not on the event loop
                        r = (await asyncio.to_thread(self.pager.reply, qs, key_scope)) if b"page_token" in qs \
                            else self.pager.reply(qs, key_scope)
                    else:
                        inm = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"if-none-match"), None)
                        r = price_sheet_reply(self.store, inm, key_scope, scope["query_string"])
                except ApiError as exc:
                    extra = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
                    r = Reply(exc.status, [(b"content-type", JSON), *extra],
                              error_body(exc, scope.get("state", {}).get("request_id")))
                await send_reply(send, r, head=scope["method"] == "HEAD")
                return
        await self.app(scope, receive, send)
