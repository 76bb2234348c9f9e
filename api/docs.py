"""API documentation served from the box itself: Swagger UI and ReDoc pages, two OpenAPI schemas.

The Swagger UI and ReDoc files come from the pinned `fastapi-offline` package (only its static
files are used) and are served under /docs/assets/, so the pages work on a network that reaches
nothing but this server. Customers get /docs, /redoc and /openapi.json: customer routes and
models only. Internal keys also get /internal/openapi.json (the internal routes and the internal
views of the models); its pages /internal/docs and /internal/redoc are public shells that ask for
the key (or take it from the URL fragment `#key=...`, which browsers never send to a server) and
send it with every request they make.
"""
from __future__ import annotations

import html
import json
from copy import deepcopy
from pathlib import Path
from typing import Any, Iterable

from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

ASSETS_URL = "/docs/assets"


def assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def _page(title: str, head: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><link rel="icon" href="{{root}}{ASSETS_URL}/favicon.png">{head}
<style>body{{margin:0;padding:0}}</style></head>
<body>{body}</body></html>"""


_KEY_JS = """const p = new URLSearchParams(location.hash.slice(1));
let key = p.get("key") || sessionStorage.getItem("idlecap-internal-key") || window.prompt("internal API key") || "";
sessionStorage.setItem("idlecap-internal-key", key);
if (p.get("key")) history.replaceState(null, "", location.pathname);
const auth = {"Authorization": "Bearer " + key};"""


def swagger_page(title: str, spec_url: str, root: str, internal: bool = False) -> str:
    auth = _KEY_JS if internal else "const auth = {};"
    body = f"""<div id="swagger-ui"></div>
<script src="{root}{ASSETS_URL}/swagger-ui-bundle.js"></script>
<script>{auth}
SwaggerUIBundle({{url: {json.dumps(root + spec_url)}, dom_id: "#swagger-ui", layout: "BaseLayout", deepLinking: true,
  showExtensions: true, showCommonExtensions: true, validatorUrl: null,
  requestInterceptor: (r) => {{ Object.assign(r.headers, auth); return r; }},
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]}});
</script>"""
    head = f'<link rel="stylesheet" href="{root}{ASSETS_URL}/swagger-ui.css">'
    return _page(title, head, body).replace("{root}", root)


def redoc_page(title: str, spec_url: str, root: str, internal: bool = False) -> str:
    auth = _KEY_JS if internal else "const auth = {};"
    body = f"""<div id="redoc"></div>
<script src="{root}{ASSETS_URL}/redoc.standalone.js"></script>
<script>{auth}
fetch({json.dumps(root + spec_url)}, {{headers: auth}}).then((r) => r.json())
  .then((spec) => Redoc.init(spec, {{hideDownloadButton: false}}, document.getElementById("redoc")));
</script>"""
    return _page(title, "", body).replace("{root}", root)


# ---- schemas ------------------------------------------------------------------------------------------
def _walk_refs(obj: Any, rename: dict[str, str]) -> None:
    if isinstance(obj, dict):
        ref = obj.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name in rename:
                obj["$ref"] = f"#/components/schemas/{rename[name]}"
        for v in obj.values():
            _walk_refs(v, rename)
    elif isinstance(obj, list):
        for v in obj:
            _walk_refs(v, rename)


def _add_models(doc: dict[str, Any], models: Iterable[type[BaseModel]]) -> None:
    comps = doc.setdefault("components", {}).setdefault("schemas", {})
    for m in models:
        js = m.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        for name, sub in js.pop("$defs", {}).items():
            comps.setdefault(name, sub)
        comps[m.__name__] = js


def _prune(doc: dict[str, Any]) -> None:
    """Drop component schemas nothing refers to (the customer twins in the internal schema)."""
    comps = doc.get("components", {}).get("schemas", {})
    while True:
        text = json.dumps({k: v for k, v in doc.items() if k != "components"}) + json.dumps(comps)
        unused = [n for n in comps if f'"#/components/schemas/{n}"' not in text]
        if not unused:
            return
        for n in unused:
            del comps[n]


def build_openapi(title: str, version: str, description: str, routes: list, public: frozenset[str],
                  twins: dict[str, type[BaseModel]] | None = None) -> dict[str, Any]:
    """An OpenAPI document for `routes` with the bearer-key scheme on every non-public route; `twins`
    swaps response models for their internal versions (PriceSheet -> InternalPriceSheet)."""
    doc = get_openapi(title=title, version=version, description=description, routes=routes)
    if twins:
        _add_models(doc, twins.values())
        _walk_refs(doc["paths"], {k: m.__name__ for k, m in twins.items()})
        _prune(doc)
    doc.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http", "scheme": "bearer", "description": "your idlecap API key: `Authorization: Bearer ick_...`"}
    for path, ops in doc.get("paths", {}).items():
        if path not in public:
            for op in ops.values():
                op["security"] = [{"apiKey": []}]
    return deepcopy(doc)
