"""Retry policy for I/O tasks: back off and retry what a second try can fix, fail fast on the rest."""
from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

TRANSIENT = (OSError, ConnectionError, TimeoutError)


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a locked/busy file, a dropped connection or a timeout; not a wrong input (ValueError, ...)."""
    import duckdb

    try:
        exc = state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001
        exc = e
    if isinstance(exc, (duckdb.IOException, duckdb.ConnectionException)):
        return True
    try:
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException) and exc.error_code in ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR"):
            return True
    except ImportError:
        pass
    return isinstance(exc, TRANSIENT)


IO_RETRY = {"retries": 3, "retry_delay_seconds": exponential_backoff(backoff_factor=2), "retry_jitter_factor": 0.5,
            "retry_condition_fn": _transient}
