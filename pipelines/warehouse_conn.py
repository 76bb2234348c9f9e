"""Opening the warehouse with the configured resources, and waiting politely when it is busy."""
from __future__ import annotations

from collections.abc import Callable

import duckdb

from pipelines.settings import Settings
from warehouse.db import Resources, connect


def resources(settings: Settings) -> Resources:
    w = settings.warehouse
    return Resources(memory_limit=w.memory_limit, temp_directory=str(w.temp_directory), threads=w.threads)


def _log_wait(message: str) -> None:
    import logging

    logging.getLogger("idlecap").warning("%s; waiting", message)


def open_warehouse(settings: Settings, purpose: str, read_only: bool = False,
                   on_wait: Callable[[str], None] | None = None) -> duckdb.DuckDBPyConnection:
    """`connect` with [warehouse] memory/threads/spill settings; waits up to busy_wait_s for a holder."""
    return connect(settings.duckdb_path, read_only=read_only, resources=resources(settings), purpose=purpose,
                   wait_s=settings.warehouse.busy_wait_s, on_wait=on_wait or _log_wait)
