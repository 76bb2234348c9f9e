"""The leasing API: the current price sheet, history, filtered prices, quotes, internal forecasts.

`create_app(ApiConfig(...))` builds the app; `idlecap serve` runs it under uvicorn. A background
task calls `SheetStore.refresh` every `reload_seconds`, so a newly published sheet is served
within that time without a restart, and a failed night leaves the last good sheet in place.
Every sheet-bearing response says which version it is and whether it is still fresh
(`Idlecap-Sheet-Version`, `Idlecap-Sheet-Status: fresh|expired`).
"""
import asyncio
import base64
import contextlib
import hashlib
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from api import schemas
from api.gate import PUBLIC, Gate
from api.keys import KeyRing
from api.quotes import CapacityShort, QuoteAsk, QuoteInvalid, quote
from api.store import LoadedSheet, SheetStore

log = logging.getLogger("idlecap.api")
JSON = "application/json"


@dataclass(frozen=True)
class ApiConfig:
    sheets_dir: Path
    keys_path: Path
    reload_seconds: float = 1.0
    max_body_bytes: int = 16_384
    page_size: int = 100
    max_page_size: int = 1000
    access_log: bool = True


HISTORY_PARAMS = frozenset({"limit", "page_token"})
PRICES_PARAMS = frozenset({"gpu_model", "region", "pool", "product", "start_from", "start_to", "limit", "page_token"})


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.detail, self.headers = status, code, message, detail, headers


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type=JSON, headers=headers)


def _sheet_headers(sheet: LoadedSheet, now: datetime) -> dict[str, str]:
    return {"Idlecap-Sheet-Version": str(sheet.version),
            "Idlecap-Sheet-Status": "expired" if sheet.expired(now) else "fresh"}


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison, as RFC 9110 asks for If-None-Match; `*` matches any current sheet."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _token(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def _untoken(token: str) -> dict[str, Any]:
    try:
        out = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(out, dict):
            raise ValueError
        return out
    except (ValueError, orjson.JSONDecodeError):
        raise ApiError(422, "invalid_page_token", "page_token is not one this API issued; start again without it") from None


def _only(request: Request, allowed: frozenset[str]) -> None:
    """A misspelt filter (`?gpu=V100`) must not silently return everything."""
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown query parameter(s) {unknown}; this route takes {sorted(allowed)}")


def _csv(values: list[str] | None) -> set[str] | None:
    """`?product=spot&product=reserved_7d` and `?product=spot,reserved_7d` both work."""
    if not values:
        return None
    return {v.strip() for x in values for v in x.split(",") if v.strip()} or None


class InternalForecasts:
    """Forecast files published next to each sheet (`internal/forecast-NNNNNN.parquet`), cached by version."""

    def __init__(self, sheets_dir: Path, size: int = 4):
        self.dir = Path(sheets_dir) / "internal"
        self.cache: OrderedDict[int, dict[str, list[dict[str, Any]]]] = OrderedDict()
        self.size = size

    def pools(self, version: int) -> dict[str, list[dict[str, Any]]] | None:
        if version in self.cache:
            return self.cache[version]
        path = self.dir / f"forecast-{version:06d}.parquet"
        if not path.exists():
            return None
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        by_pool: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            r["ds"] = r["ds"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            if r.get("origin") is not None:
                r["origin"] = r["origin"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            by_pool.setdefault(r["unique_id"], []).append(r)
        self.cache[version] = by_pool
        while len(self.cache) > self.size:
            self.cache.popitem(last=False)
        return by_pool


def create_app(config: ApiConfig) -> FastAPI:
    store = SheetStore(config.sheets_dir)
    keys = KeyRing(config.keys_path)
    forecasts = InternalForecasts(config.sheets_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async def watch() -> None:
            while True:
                await asyncio.sleep(config.reload_seconds)
                try:
                    await asyncio.to_thread(store.refresh)
                    keys.refresh()
                except Exception:  # never let the watcher die: the next tick tries again
                    log.exception("reload failed; serving what is loaded")

        task = asyncio.create_task(watch())
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(
        title="idlecap leasing API", version="1", lifespan=lifespan,
        description="Spot and reserved prices for idle GPU capacity, from the published price sheets. "
                    "Send `Authorization: Bearer <key>`; keys are created with `idlecap api-key create`.",
        docs_url="/docs", redoc_url=None,
    )
    app.state.store, app.state.keys = store, keys

    def current() -> LoadedSheet:
        s = store.current
        if s is None:
            raise ApiError(503, "no_sheet", "no price sheet has been published yet", headers={"Retry-After": "60"})
        return s

    # ---- errors: one JSON shape, never a stack trace ---------------------------------------------
    def _err(request: Request, status: int, code: str, message: str, detail: Any = None,
             headers: dict[str, str] | None = None) -> Response:
        body = {"error": code, "message": message, "request_id": request.scope.get("state", {}).get("request_id")}
        if detail is not None:
            body["detail"] = detail
        return _json(body, status, headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return _err(request, exc.status, exc.code, exc.message, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        detail = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", ""),
                   "type": e.get("type", "")} for e in exc.errors()]
        msg = "; ".join(f"{d['field']}: {d['message']}" for d in detail[:5])
        return _err(request, 422, "invalid_request", msg or "invalid request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status_code, "http_error")
        return _err(request, exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    # ---- probes ---------------------------------------------------------------------------------
    @app.get("/healthz", response_model=schemas.Health, tags=["probes"])
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return _json({"status": "ok"})

    @app.get("/readyz", response_model=schemas.Ready, tags=["probes"],
             responses={503: {"model": schemas.Ready, "description": "no sheet, or the sheet has expired"}})
    async def readyz() -> Response:
        """Readiness: a sheet is loaded and has not expired."""
        s, now = store.current, _now()
        if s is None:
            body = {"ready": False, "sheet_version": None, "valid_until": None, "expired": None,
                    "reason": "no price sheet published yet", "last_reload_error": store.last_error}
            return _json(body, 503)
        exp = s.expired(now)
        body = {"ready": not exp, "sheet_version": s.version, "valid_until": s.header["valid_until"], "expired": exp,
                "reason": f"sheet v{s.version} expired at {s.header['valid_until']}" if exp else None,
                "last_reload_error": store.last_error}
        return _json(body, 503 if exp else 200)

    # ---- sheets ---------------------------------------------------------------------------------
    errors = {401: {"model": schemas.ErrorBody}, 403: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody}}

    @app.get("/v1/price-sheet", tags=["prices"], response_model=None,
             responses={200: {"model": schemas.PriceSheet}, 304: {"description": "not modified"},
                        503: {"model": schemas.ErrorBody}, **errors})
    async def price_sheet(if_none_match: Annotated[str | None, Header(max_length=1024)] = None) -> Response:
        """The current sheet, byte for byte as published; cacheable until `valid_until`."""
        s, now = current(), _now()
        headers = {"ETag": s.etag, **_sheet_headers(s, now)}
        headers["Cache-Control"] = "no-cache" if s.expired(now) else f"public, max-age={s.max_age(now)}"
        if _etag_matches(if_none_match, s.etag):
            return Response(status_code=304, headers=headers)
        return Response(s.body, media_type=JSON, headers=headers)

    @app.get("/v1/price-sheet/{version}", tags=["prices"], response_model=None,
             responses={200: {"model": schemas.PriceSheet}, 304: {"description": "not modified"},
                        404: {"model": schemas.ErrorBody}, 503: {"model": schemas.ErrorBody}, **errors})
    async def price_sheet_version(version: Annotated[int, PathParam(ge=1, le=999_999)],
                                  if_none_match: Annotated[str | None, Header(max_length=1024)] = None) -> Response:
        """One published version; versions never change, so it can be cached for good."""
        current()
        s = await asyncio.to_thread(store.get, version)
        if s is None:
            raise ApiError(404, "not_found", f"no published price sheet v{version}")
        headers = {"ETag": s.etag, "Cache-Control": "public, max-age=31536000, immutable",
                   "Idlecap-Sheet-Version": str(s.version)}
        if _etag_matches(if_none_match, s.etag):
            return Response(status_code=304, headers=headers)
        return Response(s.body, media_type=JSON, headers=headers)

    @app.get("/v1/price-sheets", tags=["prices"], response_model=None,
             responses={200: {"model": schemas.SheetsPage}, 503: {"model": schemas.ErrorBody}, **errors})
    async def price_sheets(request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                           page_token: Annotated[str | None, Query(max_length=512)] = None) -> Response:
        """Published sheets, newest first (headers and item counts)."""
        _only(request, HISTORY_PARAMS)
        current()
        before = None
        if page_token:
            t = _untoken(page_token)
            if not isinstance(t.get("before"), int):
                raise ApiError(422, "invalid_page_token", "page_token is not a history token")
            before = t["before"]
        versions = [v for v in await asyncio.to_thread(store.versions) if before is None or v < before]
        page = []
        for v in versions[:limit]:
            h = await asyncio.to_thread(store.summary, v)
            if h is not None:
                page.append(h)
        nxt = _token({"before": versions[limit - 1]}) if len(versions) > limit else None
        return _json({"sheets": page, "next_page_token": nxt})

    @app.get("/v1/prices", tags=["prices"], response_model=None,
             responses={200: {"model": schemas.PricesPage}, 503: {"model": schemas.ErrorBody}, **errors})
    async def prices(
        request: Request,
        gpu_model: Annotated[list[str] | None, Query(max_length=20, description="repeat or comma-separate")] = None,
        region: Annotated[list[str] | None, Query(max_length=20)] = None,
        pool: Annotated[list[str] | None, Query(max_length=50)] = None,
        product: Annotated[list[str] | None, Query(max_length=10, description="spot, reserved_1d, ...")] = None,
        start_from: Annotated[schemas.Timestamp | None, Query(description="items starting at or after")] = None,
        start_to: Annotated[schemas.Timestamp | None, Query(description="items starting before")] = None,
        limit: Annotated[int | None, Query(ge=1, le=config.max_page_size)] = None,
        page_token: Annotated[str | None, Query(max_length=512)] = None,
    ) -> Response:
        """Items of the current sheet filtered like a cloud price list, paginated with `next_page_token`.

        A token pins the sheet version it started on, so paging stays consistent across a switch."""
        _only(request, PRICES_PARAMS)
        prods = _csv(product)
        bad = sorted(p for p in (prods or ()) if not re.fullmatch(schemas.PRODUCT_PATTERN, p))
        if bad:
            raise ApiError(422, "invalid_request", f"unknown product {bad}: use spot or reserved_<N>d")
        if start_from and start_to and start_to <= start_from:
            raise ApiError(422, "invalid_request", "start_to must be after start_from")
        filters = {"gpu_model": _csv(gpu_model), "region": _csv(region), "pool": _csv(pool), "product": prods}
        fkey = hashlib.sha256(orjson.dumps([sorted(v) if v else None for v in filters.values()]
                                           + [str(start_from), str(start_to)])).hexdigest()[:12]
        s, offset = current(), 0
        if page_token:
            t = _untoken(page_token)
            if t.get("f") != fkey or not isinstance(t.get("v"), int) or not isinstance(t.get("o"), int) or t["o"] < 0:
                raise ApiError(422, "invalid_page_token", "page_token belongs to other filters; start again without it")
            s = await asyncio.to_thread(store.get, t["v"]) or s
            if s.version != t["v"]:
                raise ApiError(410, "page_token_expired", f"sheet v{t['v']} is no longer available; start again")
            offset = t["o"]
        size = limit or config.page_size
        sf = start_from.astimezone(timezone.utc) if start_from else None
        st = start_to.astimezone(timezone.utc) if start_to else None
        match = [i for i, it in enumerate(s.items)
                 if all(v is None or it[k] in v for k, v in filters.items())
                 and (sf is None or s.starts[i] >= sf) and (st is None or s.starts[i] < st)]
        page = match[offset:offset + size]
        nxt = _token({"v": s.version, "o": offset + size, "f": fkey}) if offset + size < len(match) else None
        h = s.header
        head = orjson.dumps({"sheet_version": s.version, "valid_from": h["valid_from"], "valid_until": h["valid_until"],
                             "currency": h["currency"], "total": len(match), "next_page_token": nxt})
        body = head[:-1] + b',"items":[' + b",".join(s.item_bytes[i] for i in page) + b"]}"
        return Response(body, media_type=JSON, headers=_sheet_headers(s, _now()))

    # ---- quotes ---------------------------------------------------------------------------------
    @app.post("/v1/quotes", tags=["quotes"], response_model=None,
              responses={200: {"model": schemas.Quote}, 409: {"model": schemas.ErrorBody,
                         "description": "the offered capacity cannot cover the request"},
                         400: {"model": schemas.ErrorBody, "description": "the body is not JSON"},
                         413: {"model": schemas.ErrorBody}, 503: {"model": schemas.ErrorBody}, **errors})
    async def quotes(ask: schemas.QuoteRequest) -> Response:
        """Price N GPUs of a model for a product and start from the current sheet (not a reservation)."""
        s = current()
        try:
            q = quote(s, QuoteAsk(**ask.model_dump()))
        except QuoteInvalid as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        except CapacityShort as exc:
            raise ApiError(409, "insufficient_capacity", str(exc), exc.detail) from None
        return _json(q, headers=_sheet_headers(s, _now()))

    # ---- internal -------------------------------------------------------------------------------
    @app.get("/v1/internal/forecasts/{pool}", tags=["internal"], response_model=None,
             responses={200: {"model": schemas.InternalForecast}, 404: {"model": schemas.ErrorBody},
                        503: {"model": schemas.ErrorBody}, **errors})
    async def internal_forecast(request: Request, pool: Annotated[str, PathParam(max_length=128)],
                                version: Annotated[int | None, Query(ge=1, le=999_999)] = None) -> Response:
        """The idle-GPU forecast a sheet was priced from, and its spot interruption risks (internal keys only)."""
        _only(request, frozenset({"version"}))
        s = current() if version is None else await asyncio.to_thread(store.get, version)
        if s is None:
            raise ApiError(404, "not_found", f"no published price sheet v{version}")
        by_pool = await asyncio.to_thread(forecasts.pools, s.version)
        if by_pool is None:
            raise ApiError(404, "not_found", f"no forecast was published with sheet v{s.version}")
        rows = by_pool.get(pool)
        if rows is None:
            raise ApiError(404, "not_found", f"pool {pool!r} has no forecast in sheet v{s.version}",
                           {"pools": sorted(by_pool)[:200]})
        spot = [{"start": it["start"], "end": it["end"], "interruption_risk": it["interruption_risk"],
                 "price_per_gpu_hour": it["price_per_gpu_hour"], "gpus_offered": it["gpus_offered"]}
                for it in s.items if it["pool"] == pool and it["product"] == "spot"]
        cols = ("ds", "mean", "q05", "q10", "q25", "q50", "q75", "q90", "q95", "gpus_total")
        return _json({"pool": pool, "sheet_version": s.version, "forecast_id": s.header.get("forecast_id"),
                      "model": rows[0].get("model"), "origin": rows[0].get("origin"),
                      "hours": [{c: r[c] for c in cols} for r in rows], "spot": spot},
                     headers=_sheet_headers(s, _now()))

    def openapi() -> dict[str, Any]:
        """The generated schema plus the bearer-key scheme on every non-probe route."""
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        doc.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
            "type": "http", "scheme": "bearer", "description": "an idlecap API key (customer or internal scope)"}
        for path, ops in doc.get("paths", {}).items():
            if path not in PUBLIC:
                for op in ops.values():
                    op["security"] = [{"apiKey": []}]
        app.openapi_schema = doc
        return doc

    app.openapi = openapi
    # before routing, so a request without a valid key costs almost nothing
    app.add_middleware(Gate, keys=keys, max_body_bytes=config.max_body_bytes, log_requests=config.access_log)
    return app
