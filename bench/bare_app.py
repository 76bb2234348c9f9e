"""Baseline server for HTTP benchmarks: a bare Starlette app serving fixed bytes per path.

No middleware, no auth, no JSON encoding: it measures what Starlette + uvicorn (uvloop,
httptools) cost on their own, so an API's overhead can be judged as a ratio against it in the
same run on the same machine (absolute rates on a shared box mean little).

CLI: `python bench/bare_app.py --port 8001 --routes routes.json`, where routes.json maps a request
target (a path, optionally with its query string) to the file whose bytes it serves, or to
{"file": ..., "etag": ...}: then a request whose If-None-Match equals the ETag gets a 304 (what a
conditional GET costs with no auth, no middleware); relative file paths are resolved against the
current directory.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def make_app(routes: dict[str, bytes], etags: dict[str, str] | None = None) -> Starlette:
    """One GET route per distinct path; the body is the entry for "path?query" if there is
    one, else the entry for the bare path, else 404.

    Routing goes through Starlette's router (not a catch-all) because a real app pays for it.
    """
    table = dict(routes)
    tags = dict(etags or {})

    async def serve(request: Request) -> Response:
        url = request.url
        tag = tags.get(url.path)
        if tag is not None and request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers={"etag": tag})
        body = table.get(url.path + "?" + url.query) if url.query else None
        if body is None:
            body = table.get(url.path)
        if body is None:
            return Response(status_code=404)
        return Response(body, media_type="application/json")

    paths = sorted({target.split("?", 1)[0] for target in table})
    return Starlette(routes=[Route(p, serve, methods=["GET"]) for p in paths])


def load_routes(routes_file: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """Read the {target: file or {file, etag}} map and the files' bytes once, at start-up."""
    mapping = json.loads(routes_file.read_text())
    if not isinstance(mapping, dict) or not mapping:
        raise SystemExit(f"{routes_file}: expected a non-empty JSON object {{target: file}}")
    bodies, etags = {}, {}
    for target, spec in mapping.items():
        spec = spec if isinstance(spec, dict) else {"file": spec}
        bodies[str(target)] = Path(spec["file"]).read_bytes()
        if spec.get("etag"):
            etags[str(target)] = spec["etag"]
    return bodies, etags


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--routes", type=Path, required=True,
                    help="JSON object mapping a request target to a file to serve")
    args = ap.parse_args(argv)
    app = make_app(*load_routes(args.routes))

    import uvicorn  # only the CLI needs it

    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
