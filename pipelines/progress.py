"""A hook for long flows to report per-item progress to whoever started them (the CLI's rich bar).

Prefect flow parameters must be serializable, so a callback cannot be passed as one; the CLI
installs a reporter here for the duration of the call instead.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_reporters: list[Callable[[str, Any], None]] = []


def report(event: str, payload: Any = None) -> None:
    for r in list(_reporters):
        r(event, payload)


@contextmanager
def reporting(reporter: Callable[[str, Any], None]) -> Iterator[None]:
    _reporters.append(reporter)
    try:
        yield
    finally:
        _reporters.remove(reporter)
