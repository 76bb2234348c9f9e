"""Fixtures for the leasing API: one real uvicorn server per module (see api_helpers)."""
from __future__ import annotations

import pandas as pd
import pytest

from api_helpers import publish_sheet, start_server, stop_server


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    """One server per test module over a sheets dir holding v1 (older) and v2 (current)."""
    var = tmp_path_factory.mktemp("api")
    now = pd.Timestamp.now(tz="UTC").floor("h")
    publish_sheet(var / "sheets", 1, now - pd.Timedelta(hours=24), valid_hours=24)
    publish_sheet(var / "sheets", 2, now)
    server = start_server(var)
    yield server
    stop_server(server)
