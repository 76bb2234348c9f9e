"""Docs served from the box: pages that load only local assets, a customer schema where every field
says what it is, and an internal schema for internal keys only (real uvicorn process)."""
from __future__ import annotations

# ruff: noqa: F811  (the api_server fixture is imported from api_helpers and named by the tests)

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from api import examples, schemas

from api_helpers import api_server  # noqa: F401  (fixture)


class _Urls(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def _page_urls(text: str) -> list[str]:
    p = _Urls()
    p.feed(text)
    return p.urls + re.findall(r"""(?:url|fetch)\(?\s*:?\s*"([^"]+)\"""", text)


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/internal/docs", "/internal/redoc"])
def test_pages_load_only_local_assets(api_server, page):
    c = api_server.client(None)
    r = c.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text and "https://" not in r.text
    urls = _page_urls(r.text)
    assert any(u.endswith((".js")) for u in urls), urls
    for u in urls:
        assert u.startswith("/") and not u.startswith("//"), u  # this server, relative
        if u.endswith((".js", ".css", ".png")):
            a = c.get(u)
            assert a.status_code == 200 and len(a.content) > (500 if u.endswith(".png") else 50_000), (u, len(a.content))


def test_assets_are_served_safely(api_server):
    c = api_server.client(None)
    assert c.get("/docs/assets/nothing.js").status_code == 404
    for trick in ("/docs/assets/../v1/price-sheet", "/docs/assets/%2e%2e/v1/price-sheet",
                  "/docs/assets/../../v1/internal/forecasts/p1"):
        r = c.get(trick)
        assert r.status_code in (401, 404), trick
        assert "items" not in r.text


def test_customer_schema_lists_no_internal_routes_and_no_cli(api_server):
    doc = api_server.client(None).get("/openapi.json").json()
    text = json.dumps(doc)
    assert not any(p.startswith("/v1/internal") for p in doc["paths"])
    for word in ("fastpath", "api-key create", "idlecap api-key", "/v1/internal", "mlflow", "Internal"):
        assert word not in text, word


def _properties(doc: dict) -> list[tuple[str, str, dict]]:
    out = []
    for name, sch in doc["components"]["schemas"].items():
        for prop, ps in sch.get("properties", {}).items():
            out.append((name, prop, ps))
    return out


def _types(ps: dict) -> set[str]:
    if "type" in ps:
        return {ps["type"]}
    return {x.get("type") for x in ps.get("anyOf", []) if "type" in x}


@pytest.mark.parametrize("which", ["customer", "internal"])
def test_every_field_has_a_description_an_example_and_numbers_a_unit(api_server, which):
    c = api_server.client("internal" if which == "internal" else None)
    doc = c.get("/openapi.json" if which == "customer" else "/internal/openapi.json").json()
    missing = []
    for model, prop, ps in _properties(doc):
        if model in ("HTTPValidationError", "ValidationError"):
            continue
        if not ps.get("description"):
            missing.append(f"{model}.{prop}: description")
        is_ref = "$ref" in ps or (ps.get("type") == "array" and "$ref" in ps.get("items", {}))
        if not is_ref and "examples" not in ps:
            missing.append(f"{model}.{prop}: example")
        if _types(ps) & {"number", "integer"} and "x-unit" not in ps:
            missing.append(f"{model}.{prop}: unit")
    assert not missing, missing


def test_documented_examples_are_real_replies(api_server):
    for model, ex in ((schemas.PriceSheet, examples.PRICE_SHEET), (schemas.PricesPage, examples.PRICES_PAGE),
                      (schemas.SheetsPage, examples.SHEETS_PAGE), (schemas.Quote, examples.QUOTE),
                      (schemas.QuoteRequest, examples.QUOTE_REQUEST), (schemas.ErrorBody, examples.INVALID_START),
                      (schemas.ErrorBody, examples.INSUFFICIENT), (schemas.Ready, examples.READY),
                      (schemas.InternalPriceSheet, examples.INTERNAL_PRICE_SHEET)):
        model.model_validate(ex)  # customer models forbid extra fields: an example cannot carry an internal one
    doc = api_server.client(None).get("/openapi.json").json()
    ok = doc["paths"]["/v1/quotes"]["post"]["responses"]["200"]["content"]["application/json"]
    assert ok["example"]["lines"] and ok["example"]["interruption_risk"] > 0
    sheet = doc["paths"]["/v1/price-sheet"]["get"]["responses"]["200"]["content"]["application/json"]["example"]
    assert sheet["items"][0]["price_per_gpu_hour"] > 0 and sheet["items"][0]["gpu_model"] != "string"


def test_the_internal_schema_needs_an_internal_key(api_server):
    assert api_server.client(None).get("/internal/openapi.json").status_code == 401
    assert api_server.client("customer").get("/internal/openapi.json").status_code == 403
    doc = api_server.client("internal").get("/internal/openapi.json").json()
    assert "/v1/internal/forecasts/{pool}" in doc["paths"]
    ref = doc["paths"]["/v1/price-sheet"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/InternalPriceSheet")
    assert "floor" in doc["components"]["schemas"]["InternalPriceItem"]["properties"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium); the HTML tests above still check every page asset is local and served")
@pytest.mark.parametrize("page,needle", [("/docs", "/v1/quotes"), ("/redoc", "interruption_risk"),
                                         ("/internal/docs", "/v1/internal/forecasts/{pool}")])
def test_pages_render_in_a_browser_that_reaches_only_loopback(api_server, page, needle, tmp_path):
    """Headless chromium with every host name unresolvable except 127.0.0.1: the rendered DOM has the API."""
    url = f"{api_server.url}{page}" + (f"#key={api_server.internal}" if page.startswith("/internal") else "")
    p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--user-data-dir={tmp_path}",
                        "--virtual-time-budget=15000", "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert needle in p.stdout, p.stdout[:2000]
