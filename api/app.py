"""The leasing API: the current price sheet, history, filtered prices, quotes, internal forecasts.

`create_app(ApiConfig(...))` builds the app; `idlecap serve` runs it under uvicorn. A background
task calls `SheetStore.refresh` every `reload_seconds`, so a newly published sheet is served
within that time without a restart, and a failed night leaves the last good sheet in place.
Every sheet-bearing response says which version it is and whether it is still fresh
(`Idlecap-Sheet-Version`, `Idlecap-Sheet-Status: fresh|expired`). What a reply shows depends on
the key's scope (api.views); the docs are served from the box (api.docs).
"""
import asyncio
import contextlib
import gc
import logging
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from api import examples, schemas
from api.docs import ASSETS_URL, assets_dir, build_openapi, redoc_page, swagger_page
from api.fastpath import (MAX_ECHO, ApiError, FastGets, PricesPager, Reply, check_inm, clip, current, error_doc,
                          etag_matches, now_utc, price_sheet_reply, sheet_headers, token, unknown, untoken)
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
    region_locations: dict[str, str] | None = None  # region code -> where it is, in words ("Paris, France")


HISTORY_PARAMS = frozenset({"limit", "page_token"})


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type=JSON, headers=headers)


def _response(r: Reply) -> Response:
    resp = Response(r.body, status_code=r.status)
    length = [] if r.status == 304 else [(b"content-length", str(len(r.body)).encode())]
    resp.raw_headers = [*r.headers, *length]
    return resp


INM = Header(max_length=1024, description="the ETag of a reply you hold: 304 while it is still current "
                                         "(at most 1,024 characters)", examples=['"9c1f0e2b7d4a6c3e8f5b1a2d3c4e5f60"'])


def _only(request: Request, allowed: frozenset[str] = frozenset()) -> None:
    """A misspelt parameter (`?limt=5`) must not be silently ignored (names are cut short in the reply)."""
    names = [k for k, _ in request.query_params.multi_items()]
    unknown(names, allowed)
    twice = sorted(k for k, n in Counter(names).items() if n > 1)
    if twice:
        raise ApiError(422, "invalid_request", f"{clip(twice[0])} is given more than once",
                       [{"field": f"query.{clip(k)}", "message": "given more than once", "type": "value_error"}
                        for k in twice[:5]])


def _scope(request: Request) -> str:
    return request.scope.get("state", {}).get("key_scope", "customer")


def _example(model: type, example: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"model": model, "description": description or "OK", "content": {"application/json": {"example": example}}}


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
        """The customer schema (what /openapi.json serves)."""
        return self.fastapi.openapi()

    def internal_openapi(self) -> dict[str, Any]:
        return self.fastapi.state.internal_openapi()


CUSTOMER_DESCRIPTION = """Spot and reserved prices for idle GPU capacity, with quotes.

**Keys.** Send `Authorization: Bearer <key>` (or `X-API-Key: <key>`) on every `/v1` request; your
account contact gives you a key. No key or a wrong one: 401; a route your key does not cover: 403.

**Prices.** Prices are per GPU-hour in the sheet's currency. A sheet holds from `valid_from` to
`valid_until`; after that it is still served, flagged `Idlecap-Sheet-Status: expired`, until the
next one. Spot GPUs come in blocks (6 hours by default) and may be reclaimed: `interruption_risk`
is the forecast probability that some GPUs of an offer are reclaimed before its block ends.
Reserved GPUs are guaranteed for the whole term. `reference` is the public cloud price we compare
with; `saving_per_gpu_hour` and `discount_vs_reference` are measured against its equivalent price.

**Caching.** `GET /v1/price-sheet` answers `If-None-Match` with 304; a published version never changes.

**Errors.** Every error is `{"error", "message", "request_id", "detail"}` with a stable `error` code:
`unauthorized` (401), `forbidden` (403), `not_found` (404), `invalid_request` and `invalid_start`
(422), `insufficient_capacity` (409), `body_too_large` (413), `no_sheet` (503)."""

INTERNAL_DESCRIPTION = """The customer API plus what internal keys see: floors, guardrail and override notes, MLflow run
ids and forecast ids in every sheet reply, and the forecasts behind a sheet under `/v1/internal/`.
Keys are created with `idlecap api-key create --scope internal|customer`. GET /v1/price-sheet and
GET /v1/prices are answered before FastAPI's routing (api/fastpath.py); validation and limits match."""


def create_app(config: ApiConfig) -> LeasingApi:
    """Raises api.keys.KeyFileError when the key file cannot be read: better no API than one that refuses everyone."""
    locations = dict(config.region_locations or {})
    store = SheetStore(config.sheets_dir, locations=locations)
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
                        if await step():
                            gc.freeze()
                    except Exception:  # never let the watcher die: the next tick tries again
                        log.exception("%s reload failed; serving what is loaded", what)
                if access is not None:
                    access.flush()

        # What is loaded now (imports, the sheet's parsed and encoded views) lives as long as the process:
        # keep it out of the cyclic GC's full passes (about 50 ms each here, a p99 spike under load).
        gc.freeze()
        task = asyncio.create_task(watch())
        try:
            yield
        finally:
            task.cancel()
            if access is not None:
                access.flush()

    app = FastAPI(title="idlecap leasing API", version="1", lifespan=lifespan, description=CUSTOMER_DESCRIPTION,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")

    # ---- errors: one bounded JSON shape, never a stack trace (the Gate answers anything unexpected) --
    def _err(request: Request, status: int, code: str, message: str, detail: Any = None,
             headers: dict[str, str] | None = None) -> Response:
        rid = request.scope.get("state", {}).get("request_id")
        return _json(error_doc(code, message, rid, detail), status, headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return _err(request, exc.status, exc.code, exc.message, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        detail = [{"field": clip(".".join(str(p) for p in e.get("loc", ())), MAX_ECHO + 8),
                   "message": clip(e.get("msg", ""), 200), "type": e.get("type", "")} for e in exc.errors()[:20]]
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
    def _internal_caller(request: Request) -> bool:
        """Whether a public route was called with an internal key (the Gate checks keys only where needed)."""
        presented = request.scope.get("state", {}).get("presented_key")
        rec = keys.check(presented) if presented else None
        return rec is not None and rec.allows("internal")

    @app.get("/healthz", response_model=schemas.Health, tags=["probes"])
    async def healthz(request: Request) -> Response:
        """Liveness: the process answers."""
        _only(request)
        return _json({"status": "ok"})

    @app.get("/readyz", response_model=schemas.Ready, tags=["probes"],
             responses={200: _example(schemas.Ready, examples.READY, "serving (status ok or degraded)"),
                        503: {"model": schemas.Ready, "description": "no sheet, or the sheet has expired"}})
    async def readyz(request: Request) -> Response:
        """Readiness: a sheet is served and has not expired. `degraded` (still 200): serving, but an
        operator should look (an unreadable newer sheet, a broken key file); `reasons` says what.
        The probe needs no key and says what is wrong in general terms; with an internal key it
        names the files and the errors."""
        _only(request)
        s, now = store.current, now_utc()
        detail = _internal_caller(request)
        if detail:
            reasons, last_error = [r for r in (store.degraded, keys.error) if r], store.last_error
        else:
            reasons = [r for r in (store.degraded_public, keys.error_public) if r]
            last_error = None if store.last_error is None else "a sheet reload failed (an internal key sees why)"
        if s is None:
            reasons.insert(0, "no price sheet published yet" if store.last_error is None
                           else "no readable price sheet yet")
            body = {"status": "unready", "ready": False, "sheet_version": None, "valid_until": None, "expired": None,
                    "reason": reasons[0], "reasons": reasons, "last_reload_error": last_error}
            return _json(body, 503)
        exp = s.expired(now)
        if exp:
            reasons.insert(0, f"sheet v{s.version} expired at {s.header['valid_until']}")
        status = "unready" if exp else "degraded" if reasons else "ok"
        body = {"status": status, "ready": not exp, "sheet_version": s.version, "valid_until": s.header["valid_until"],
                "expired": exp, "reason": reasons[0] if reasons else None, "reasons": reasons,
                "last_reload_error": last_error}
        return _json(body, 503 if exp else 200)

    # ---- sheets ---------------------------------------------------------------------------------
    errors = {401: {"model": schemas.ErrorBody, "description": "no key, or not a valid one"},
              403: {"model": schemas.ErrorBody, "description": "the key's scope does not cover this route"},
              422: {"model": schemas.ErrorBody, "description": "invalid input; `detail` names each field"}}
    no_sheet = {503: {"model": schemas.ErrorBody, "description": "no price sheet has been published yet"}}

    @app.get("/v1/price-sheet", tags=["prices"], response_model=None,
             responses={200: _example(schemas.PriceSheet, examples.PRICE_SHEET, "the current sheet"),
                        304: {"description": "not modified (If-None-Match matched the ETag)"}, **no_sheet, **errors})
    async def price_sheet(request: Request,
                          if_none_match: Annotated[str | None, INM] = None) -> Response:
        """The current sheet: every offer with its price, window, GPUs, interruption risk and reference.

        Cacheable until `valid_until` (`Cache-Control: private, max-age`); send the `ETag` back in
        `If-None-Match` to get a 304 while the sheet has not changed."""
        return _response(price_sheet_reply(store, if_none_match, _scope(request), request.scope["query_string"]))

    @app.get("/v1/price-sheet/{version}", tags=["prices"], response_model=None,
             responses={200: _example(schemas.PriceSheet, examples.PRICE_SHEET, "that version"),
                        304: {"description": "not modified"},
                        404: {"model": schemas.ErrorBody, "description": "no such published version"},
                        **no_sheet, **errors})
    async def price_sheet_version(request: Request,
                                  version: Annotated[schemas.QueryInt, PathParam(ge=1, le=999_999,
                                                                                 description="sheet version", examples=[1])],
                                  if_none_match: Annotated[str | None, INM] = None) -> Response:
        """One published version; versions never change, so it can be cached for good."""
        _only(request)
        check_inm(if_none_match)
        current(store)
        s = await asyncio.to_thread(store.get, version)
        if s is None:
            raise ApiError(404, "not_found", f"no published price sheet v{version}")
        v = s.view(_scope(request))
        headers = {"ETag": v.etag, "Cache-Control": "private, max-age=31536000, immutable",
                   "Idlecap-Sheet-Version": str(s.version),
                   "Idlecap-Sheet-Status": "expired" if s.expired(now_utc()) else "fresh"}
        if etag_matches(if_none_match, v.etag):
            return _response(Reply(304, [(k.lower().encode(), v.encode()) for k, v in headers.items()]))
        return Response(v.body, media_type=JSON, headers=headers)

    @app.get("/v1/price-sheets", tags=["prices"], response_model=None,
             responses={200: _example(schemas.SheetsPage, examples.SHEETS_PAGE, "a page of history"),
                        **no_sheet, **errors})
    async def price_sheets(request: Request,
                           limit: Annotated[schemas.QueryInt, Query(ge=1, le=100, description="sheets per page",
                                                                    examples=[20])] = 20,
                           page_token: Annotated[str | None, Query(max_length=512,
                                                                   description="next_page_token of the previous page")] = None
                           ) -> Response:
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
        page, scope, seen = [], _scope(request), 0
        for v in versions:  # a version that turns out unreadable is skipped, and the page still fills
            if len(page) == limit:
                break
            seen += 1
            h = await asyncio.to_thread(store.summary, v, scope)
            if h is not None:
                page.append(h)
        nxt = token({"before": versions[seen - 1]}) if seen < len(versions) else None
        return _json({"sheets": page, "next_page_token": nxt})

    # HEAD as on /v1/price-sheet (the fast path answers that one); kept out of the schema, whose GET says it all
    app.add_api_route("/v1/price-sheet/{version}", price_sheet_version, methods=["HEAD"], include_in_schema=False)
    app.add_api_route("/v1/price-sheets", price_sheets, methods=["HEAD"], include_in_schema=False)

    @app.get("/v1/prices", tags=["prices"], response_model=None,
             openapi_extra={"parameters": _query_parameters(schemas.PricesQuery)},
             responses={200: _example(schemas.PricesPage, examples.PRICES_PAGE, "a page of items"),
                        410: {"model": schemas.ErrorBody, "description": "the page_token's sheet is gone"},
                        **no_sheet, **errors})
    async def prices(request: Request) -> Response:
        """Items of the current sheet filtered like a cloud price list, paginated with `next_page_token`.

        Filters: gpu_model, region, pool, product (repeat or comma-separate), start_from / start_to.
        A page token keeps the sheet version the walk started on, so a walk stays consistent when a
        new sheet is published."""
        return _response(pager.reply(request.scope["query_string"], _scope(request)))

    # ---- quotes ---------------------------------------------------------------------------------
    @app.post("/v1/quotes", tags=["quotes"], response_model=None,
              openapi_extra={"requestBody": {"content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/QuoteRequest"}, "example": examples.QUOTE_REQUEST}},
                  "required": True}},
              responses={200: _example(schemas.Quote, examples.QUOTE, "the priced lease"),
                         409: {"model": schemas.ErrorBody, "description": "the offered capacity cannot cover the request",
                               "content": {"application/json": {"example": examples.INSUFFICIENT}}},
                         422: {"model": schemas.ErrorBody, "description": "invalid input, or a start that is not "
                               "offered (`invalid_start`, with `detail.valid_starts`)",
                               "content": {"application/json": {"example": examples.INVALID_START}}},
                         400: {"model": schemas.ErrorBody, "description": "the body is not JSON"},
                         413: {"model": schemas.ErrorBody, "description": "body over 16 KiB"},
                         **no_sheet, 401: errors[401], 403: errors[403]})
    async def quotes(request: Request, ask: schemas.QuoteRequest) -> Response:
        """Price N GPUs of a model for a product and start from the current sheet (not a reservation).

        Draws the cheapest offers first in every period, across pools unless `single_pool`; offers
        riskier than `max_interruption_risk` are left out. The reply gives the total, the reference
        price of the same GPU-hours and the saving, the chance that any part of the lease is
        reclaimed, and whether the sheet is still fresh."""
        _only(request)
        s = current(store)
        try:
            q = quote(s, QuoteAsk(**ask.model_dump()), now_utc(), locations)
        except QuoteInvalid as exc:
            raise ApiError(422, exc.code, str(exc), exc.detail) from None
        except CapacityShort as exc:
            raise ApiError(409, "insufficient_capacity", str(exc), exc.detail) from None
        return _response(Reply(200, [(b"content-type", b"application/json"), *sheet_headers(s, now_utc())],
                               orjson.dumps(q)))

    # ---- internal -------------------------------------------------------------------------------
    @app.get("/v1/internal/forecasts/{pool}", tags=["internal"], response_model=None,
             responses={200: {"model": schemas.InternalForecast}, 404: {"model": schemas.ErrorBody},
                        **no_sheet, **errors})
    async def internal_forecast(request: Request, pool: Annotated[str, PathParam(max_length=128)],
                                version: Annotated[schemas.QueryInt | None, Query(ge=1, le=999_999)] = None) -> Response:
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
            raise ApiError(404, "not_found", f"pool {clip(pool)!r} has no forecast in sheet v{s.version}",
                           {"pools": sorted(by_pool)[:50]})
        spot = [{"start": it["start"], "end": it["end"], "interruption_risk": it["interruption_risk"],
                 "price_per_gpu_hour": it["price_per_gpu_hour"], "gpus_offered": it["gpus_offered"]}
                for it in s.items if it["pool"] == pool and it["product"] == "spot"]
        cols = ("ds", "mean", "q05", "q10", "q25", "q50", "q75", "q90", "q95", "gpus_total")
        return _response(Reply(200, [(b"content-type", b"application/json"), *sheet_headers(s, now_utc())], orjson.dumps(
            {"pool": pool, "sheet_version": s.version, "forecast_id": s.header.get("forecast_id"),
             "model": rows[0].get("model"), "origin": rows[0].get("origin"),
             "hours": [{c: r[c] for c in cols} for r in rows], "spot": spot})))

    # ---- docs (served from the box: no CDN) -------------------------------------------------------
    def _customer_routes() -> list:
        return [r for r in app.routes if not getattr(r, "path", "").startswith(("/v1/internal", "/internal"))]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app.title, app.version, CUSTOMER_DESCRIPTION, _customer_routes(), PUBLIC)
        return app.openapi_schema

    internal_doc: dict[str, Any] = {}

    def internal_openapi() -> dict[str, Any]:
        if not internal_doc:
            internal_doc.update(build_openapi(app.title + " (internal)", app.version,
                                              CUSTOMER_DESCRIPTION + "\n\n**Internal.** " + INTERNAL_DESCRIPTION,
                                              app.routes, PUBLIC, schemas.INTERNAL_TWINS))
        return internal_doc

    app.openapi = openapi
    app.state.internal_openapi = internal_openapi
    html_headers = {"Cache-Control": "no-cache"}

    def _root(request: Request) -> str:
        return request.scope.get("root_path", "")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json(request: Request) -> Response:
        return _json(openapi())

    @app.get("/internal/openapi.json", include_in_schema=False)
    async def internal_openapi_json(request: Request) -> Response:
        return _json(internal_openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(swagger_page(app.title, "/openapi.json", _root(request)), headers=html_headers)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return HTMLResponse(redoc_page(app.title, "/openapi.json", _root(request)), headers=html_headers)

    @app.get("/internal/docs", include_in_schema=False)
    async def internal_docs(request: Request) -> HTMLResponse:
        return HTMLResponse(swagger_page(app.title + " (internal)", "/internal/openapi.json", _root(request), True),
                            headers=html_headers)

    @app.get("/internal/redoc", include_in_schema=False)
    async def internal_redoc(request: Request) -> HTMLResponse:
        return HTMLResponse(redoc_page(app.title + " (internal)", "/internal/openapi.json", _root(request), True),
                            headers=html_headers)

    return LeasingApi(app, store, keys, pager, config, access)
