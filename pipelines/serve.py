"""Builds the leasing API from the settings: the only place api/ meets configuration."""
from __future__ import annotations

import logging
import sys

from api.app import ApiConfig, create_app
from pipelines.settings import Settings, load_settings


def api_config(settings: Settings) -> ApiConfig:
    a = settings.api
    return ApiConfig(sheets_dir=settings.sheets_dir, keys_path=a.keys_path, reload_seconds=a.reload_seconds,
                     max_body_bytes=a.max_body_bytes, page_size=a.page_size,
                     access_log=a.access_log, region_locations=dict(a.region_locations))


def configure_logging() -> None:
    """Reload events and errors to stderr (the access lines go there too, as JSON, from api.gate.AccessLog)."""
    h2 = logging.StreamHandler(sys.stderr)
    h2.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    app_log = logging.getLogger("idlecap.api")
    app_log.handlers[:] = [h2]
    app_log.setLevel(logging.INFO)
    app_log.propagate = False


def app():
    """uvicorn factory (`pipelines.serve:app`), so `--workers N` can start each worker the same way.

    A key file that cannot be read stops the start with one line (no traceback)."""
    from api.keys import KeyFileError

    configure_logging()
    try:
        return create_app(api_config(load_settings()))
    except KeyFileError as exc:
        raise SystemExit(f"idlecap serve: {exc}") from None
