"""pipelines.retries: I/O tasks retry what can pass on a second try, and fail fast on bad input."""
from __future__ import annotations

import pytest
from prefect import flow, task

from pipelines.retries import IO_RETRY

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_transient_errors_are_retried_and_bad_input_is_not():
    calls = {"io": 0, "bad": 0}

    @task(**{**IO_RETRY, "retry_delay_seconds": 0})
    def flaky_io() -> str:
        calls["io"] += 1
        if calls["io"] < 3:
            raise OSError("Could not set lock on file: held by another process")
        return "ok"

    @task(**{**IO_RETRY, "retry_delay_seconds": 0})
    def bad_input() -> None:
        calls["bad"] += 1
        raise ValueError("pool_hourly is empty")

    @flow
    def both() -> tuple:
        return flaky_io(), bad_input(return_state=True)

    ok, state = both()
    assert ok == "ok" and calls["io"] == 3
    assert state.is_failed() and calls["bad"] == 1
