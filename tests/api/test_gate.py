"""The gate in front of every route: scopes hold under path tricks and a proxy prefix; HEAD, 304 and
caching headers follow HTTP (real uvicorn processes)."""
from __future__ import annotations

# ruff: noqa: F811  (the api_server fixture is imported from api_helpers and named by the tests)

import pandas as pd
import pytest

from api_helpers import api_server, publish_sheet, start_server, stop_server  # noqa: F401  (fixture)

TRICKS = ["/v1/internal/forecasts/p1", "//v1/internal/forecasts/p1", "/v1//internal/forecasts/p1",
          "/v1/./internal/forecasts/p1", "/v1/x/../internal/forecasts/p1", "/V1/internal/forecasts/p1",
          "/v1/%69nternal/forecasts/p1", "/v1/internal/forecasts/p1/", "/v1/internal", "/v1/internal/"]


def test_a_customer_key_never_reads_internal_routes(api_server):
    with api_server.client("customer") as c:
        for path in TRICKS:
            r = c.get(path)
            assert r.status_code in (403, 404, 405), (path, r.status_code)
            assert "hours" not in r.text
    with api_server.client("internal") as c:
        assert c.get(TRICKS[0]).status_code == 200


def test_behind_a_path_prefix_scopes_still_hold(tmp_path):
    """uvicorn --root-path /api (a proxy that strips /api): scope["path"] then starts with /api."""
    publish_sheet(tmp_path / "sheets", 1, pd.Timestamp.now(tz="UTC").floor("h"))
    server = start_server(tmp_path, root_path="/api")
    try:
        with server.client("customer") as c:
            assert c.get("/v1/internal/forecasts/p1").status_code == 403
            assert c.get("/v1/price-sheet").status_code == 200
            assert c.get("/v1/prices", params={"pool": "p1"}).json()["total"] > 0
        with server.client("internal") as c:
            assert c.get("/v1/internal/forecasts/p1").status_code == 200
        with server.client(None) as c:
            assert c.get("/healthz").status_code == 200
            assert c.get("/v1/price-sheet").status_code == 401
    finally:
        stop_server(server)


def test_head_304_and_cache_headers(api_server):
    with api_server.client() as c:
        full = c.get("/v1/price-sheet")
        h = c.head("/v1/price-sheet")
        assert h.status_code == 200 and h.content == b""
        assert h.headers["content-length"] == str(len(full.content)) and h.headers["etag"] == full.headers["etag"]
        nm = c.get("/v1/price-sheet", headers={"If-None-Match": full.headers["etag"]})
        assert nm.status_code == 304 and "content-length" not in nm.headers
        assert full.headers["cache-control"].startswith("private, max-age=")  # keyed answers: no shared caches
        v = c.get("/v1/price-sheet/2")
        assert v.headers["cache-control"].startswith("private,") and "immutable" in v.headers["cache-control"]
        nm = c.get("/v1/price-sheet/2", headers={"If-None-Match": v.headers["etag"]})
        assert nm.status_code == 304 and "content-length" not in nm.headers


@pytest.mark.parametrize("path", ["/v1/prices", "/v1/price-sheets", "/v1/quotes", "/v1/nothing"])
def test_unknown_or_any_route_needs_a_key(api_server, path):
    with api_server.client(None) as c:
        assert c.get(path).status_code == 401
