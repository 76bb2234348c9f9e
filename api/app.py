"""The leasing API: the current price sheet, history, filtered prices, quotes, internal forecasts.

`create_app(ApiConfig(...))` builds the app; `idlecap serve` runs it under uvicorn. A background
task calls `SheetStore.refresh` every `reload_seconds`, so a newly published sheet is served
within that time without a restart, and a failed night leaves the last good sheet in place.
Every sheet-bearing response says which version it is and whether it is still fresh
(`Idlecap-Sheet-Version`, `Idlecap-Sheet-Status: fresh|expired`).
"""
import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from api import schemas
from api.fastpath import (ApiError, FastGets, PricesPager, Reply, current, etag_matches, now_utc, price_sheet_reply,
                          sheet_headers, token, untoken)
from api.gate import PUBLIC, AccessLog, Gate
from api.keys import KeyRing
from api.quotes import CapacityShort, QuoteAsk, QuoteInvalid, quote
from api.store import SheetStore

log = logging.getLogger("idlecap.api")
JSON = "application/json"


@dataclass(frozen=True)
class ApiConfig:
    sheets_dir: Path
    keys_path: Path
    reload_seconds: float = 1.0
    max_body_bytes: int = 16_384
    page_size: int = 100
    access_log: bool = True
    access_log_stream: Any = None  # binary stream for access lines (default stderr)


HISTORY_PARAMS = frozenset({"limit", "page_token"})


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type=JSON, headers=headers)


def _response(r: Reply) -> Response:
    resp = Response(r.body, status_code=r.status)
    length = [] if r.status == 304 else [(b"content-length", str(len(r.body)).encode())]
    resp.raw_headers = [*r.headers, *length]
    return resp


def _only(request: Request, allowed: frozenset[str]) -> None:
    """A misspelt parameter (`?limt=5`) must not be silently ignored."""
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown query parameter(s) {unknown}; this route takes {sorted(allowed)}")


def _query_parameters(model: type) -> list[dict[str, Any]]:
    """OpenAPI parameters for a query model whose validation the handler does itself (fastpath)."""
    js = model.model_json_schema()
    return [{"name": k, "in": "query", "required": False, "schema": {kk: vv for kk, vv in v.items() if kk != "description"},
             **({"description": v["description"]} if "description" in v else {})}
            for k, v in js["properties"].items()]


class InternalForecasts:
    """Forecast files published next to each sheet (`internal/forecast-NNNNNN.parquet`), cached by version."""

    def __init__(self, sheets_dir: Path, size: int = 4):
        self.dir = Path(sheets_dir) / "internal"
        self.cache: OrderedDict[int, dict[str, list[dict[str, Any]]]] = OrderedDict()
        self.size = size
        self.lock = threading.Lock()

    def pools(self, version: int) -> dict[str, list[dict[str, Any]]] | None:
        with self.lock:
            hit = self.cache.get(version)
        if hit is not None:
            return hit
        path = self.dir / f"forecast-{version:06d}.parquet"
        if not path.exists():
            return None
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # noqa: BLE001 - a damaged file is "no forecast", not a crash
            log.error("%s: unreadable (%s)", path.name, exc)
            return None
        by_pool: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            r["ds"] = r["ds"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            if r.get("origin") is not None:
                r["origin"] = r["origin"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            by_pool.setdefault(r["unique_id"], []).append(r)
        with self.lock:
            self.cache[version] = by_pool
            while len(self.cache) > self.size:
                self.cache.popitem(last=False)
        return by_pool


class LeasingApi:
    """The ASGI app uvicorn runs: Gate (key, limits, access log) -> FastGets (polled routes) -> FastAPI."""

    def __init__(self, api: FastAPI, store: SheetStore, keys: KeyRing, pager: PricesPager, config: ApiConfig,
                 access: AccessLog | None):
        self.fastapi, self.store, self.keys = api, store, keys
        self._asgi = Gate(FastGets(api, store, pager), keys, config.max_body_bytes, access)

    async def __call__(self, scope, receive, send) -> None:
        await self._asgi(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        return self.fastapi.openapi()


def create_app(config: ApiConfig) -> LeasingApi:
    store = SheetStore(config.sheets_dir)
    keys = KeyRing(config.keys_path)
    pager = PricesPager(store, config.page_size)
    forecasts = InternalForecasts(config.sheets_dir)
    access = AccessLog(config.access_log_stream) if config.access_log else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async def watch() -> None:
            while True:
                await asyncio.sleep(config.reload_seconds)
                for what, step in (("sheet", lambda: asyncio.to_thread(store.refresh)),
                                   ("keys", lambda: asyncio.to_thread(keys.refresh))):
                    try:  # separately: a broken sheet must not stop key revocations, nor the reverse
                        await step()
                    except Exception:  # never let the watcher die: the next tick tries again
                        log.exception("%s reload failed; serving what is loaded", what)
                if access is not None:
                    access.flush()

        task = asyncio.create_task(watch())
        try:
            yield
        finally:
            task.cancel()
            if access is not None:
                access.flush()

    app = FastAPI(
        title="idlecap leasing API", version="1", lifespan=lifespan,
        description="Spot and reserved prices for idle GPU capacity, from the published price sheets. "
                    "Send `Authorization: Bearer <key>`; keys are created with `idlecap api-key create`.",
        docs_url="/docs", redoc_url=None,
    )

    # ---- errors: one JSON shape, never a stack trace (the Gate answers anything unexpected) -----
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

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        # Starlette answers with this, then re-raises to the Gate, which logs the trace
        return _err(request, 500, "internal_error", "internal error; quote the request_id to the operators")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        return _err(request, exc.status_code, code.get(exc.status_code, "http_error"), str(exc.detail),
                    headers=getattr(exc, "headers", None))

    # ---- probes ---------------------------------------------------------------------------------
    @app.get("/healthz", response_model=schemas.Health, tags=["probes"])
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return _json({"status": "ok"})

    @app.get("/readyz", response_model=schemas.Ready, tags=["probes"],
             responses={503: {"model": schemas.Ready, "description": "no sheet, or the sheet has expired"}})
    async def readyz() -> Response:
        """Readiness: a sheet is loaded and has not expired."""
        s, now = store.current, now_utc()
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
        """The current sheet, byte for byte as published; cacheable until `valid_until` (GETs are served by fastpath)."""
        return _response(price_sheet_reply(store, if_none_match))

    @app.get("/v1/price-sheet/{version}", tags=["prices"], response_model=None,
             responses={200: {"model": schemas.PriceSheet}, 304: {"description": "not modified"},
                        404: {"model": schemas.ErrorBody}, 503: {"model": schemas.ErrorBody}, **errors})
    async def price_sheet_version(version: Annotated[int, PathParam(ge=1, le=999_999)],
                                  if_none_match: Annotated[str | None, Header(max_length=1024)] = None) -> Response:
        """One published version; versions never change, so it can be cached for good."""
        current(store)
        s = await asyncio.to_thread(store.get, version)
        if s is None:
            raise ApiError(404, "not_found", f"no published price sheet v{version}")
        headers = {"ETag": s.etag, "Cache-Control": "private, max-age=31536000, immutable",
                   "Idlecap-Sheet-Version": str(s.version)}
        if etag_matches(if_none_match, s.etag):
            return _response(Reply(304, [(k.lower().encode(), v.encode()) for k, v in headers.items()]))
        return Response(s.body, media_type=JSON, headers=headers)

    @app.get("/v1/price-sheets", tags=["prices"], response_model=None,
             responses={200: {"model": schemas.SheetsPage}, 503: {"model": schemas.ErrorBody}, **errors})
    async def price_sheets(request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                           page_token: Annotated[str | None, Query(max_length=512)] = None) -> Response:
        """Published sheets, newest first (headers and item counts)."""
        _only(request, HISTORY_PARAMS)
        current(store)
        before = None
        if page_token:
            t = untoken(page_token)
            if not isinstance(t.get("before"), int):
                raise ApiError(422, "invalid_page_token", "page_token is not a history token")
            before = t["before"]
        versions = [v for v in await asyncio.to_thread(store.versions) if before is None or v < before]
        page = []
        for v in versions[:limit]:
            h = await asyncio.to_thread(store.summary, v)
            if h is not None:
                page.append(h)
        nxt = token({"before": versions[limit - 1]}) if len(versions) > limit else None
        return _json({"sheets": page, "next_page_token": nxt})

    @app.get("/v1/prices", tags=["prices"], response_model=None,
             openapi_extra={"parameters": _query_parameters(schemas.PricesQuery)},
             responses={200: {"model": schemas.PricesPage}, 410: {"model": schemas.ErrorBody,
                        "description": "the page_token's sheet is gone"}, 503: {"model": schemas.ErrorBody}, **errors})
    async def prices(request: Request) -> Response:
        """Items of the current sheet filtered like a cloud price list, paginated with `next_page_token`.

        Filters: gpu_model, region, pool, product (repeat or comma-separate), start_from / start_to.
        A page token pins the sheet version it started on, so a walk stays consistent across a switch."""
        return _response(pager.reply(request.scope["query_string"]))

    # ---- quotes ---------------------------------------------------------------------------------
    @app.post("/v1/quotes", tags=["quotes"], response_model=None,
              responses={200: {"model": schemas.Quote}, 409: {"model": schemas.ErrorBody,
                         "description": "the offered capacity cannot cover the request"},
                         400: {"model": schemas.ErrorBody, "description": "the body is not JSON"},
                         413: {"model": schemas.ErrorBody}, 503: {"model": schemas.ErrorBody}, **errors})
    async def quotes(ask: schemas.QuoteRequest) -> Response:
        """Price N GPUs of a model for a product and start from the current sheet (not a reservation)."""
        s = current(store)
        try:
            q = quote(s, QuoteAsk(**ask.model_dump()))
        except QuoteInvalid as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        except CapacityShort as exc:
            raise ApiError(409, "insufficient_capacity", str(exc), exc.detail) from None
        return _response(Reply(200, [(b"content-type", b"application/json"), *sheet_headers(s, now_utc())],
                               orjson.dumps(q)))

    # ---- internal -------------------------------------------------------------------------------
    @app.get("/v1/internal/forecasts/{pool}", tags=["internal"], response_model=None,
             responses={200: {"model": schemas.InternalForecast}, 404: {"model": schemas.ErrorBody},
                        503: {"model": schemas.ErrorBody}, **errors})
    async def internal_forecast(request: Request, pool: Annotated[str, PathParam(max_length=128)],
                                version: Annotated[int | None, Query(ge=1, le=999_999)] = None) -> Response:
        """The idle-GPU forecast a sheet was priced from, and its spot interruption risks (internal keys only)."""
        _only(request, frozenset({"version"}))
        s = current(store) if version is None else await asyncio.to_thread(store.get, version)
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
        return _response(Reply(200, [(b"content-type", b"application/json"), *sheet_headers(s, now_utc())], orjson.dumps(
            {"pool": pool, "sheet_version": s.version, "forecast_id": s.header.get("forecast_id"),
             "model": rows[0].get("model"), "origin": rows[0].get("origin"),
             "hours": [{c: r[c] for c in cols} for r in rows], "spot": spot})))

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
    return LeasingApi(app, store, keys, pager, config, access)
