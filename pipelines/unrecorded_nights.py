"""Nights that failed before they could record themselves (Prefect's server did not start, the
warehouse was locked): one JSON line each in `<var_dir>/nightly_unrecorded.jsonl`, a plain file
because the warehouse may be the very thing that could not be opened. `idlecap status` shows
them with the recorded nights.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from pipelines.settings import Settings

FILE = "nightly_unrecorded.jsonl"


def _path(settings: Settings) -> Path:
    return Path(settings.var_dir) / FILE


def classify(exc: BaseException) -> str:
    """Which start-up step failed, from the exception (the step names `idlecap status` shows)."""
    from warehouse.db import WarehouseBusy

    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, WarehouseBusy) or "lock" in text.lower() and "duckdb" in text.lower():
        return "warehouse lock"
    if "Prefect API" in text or "ephemeral" in text.lower():
        return "Prefect server start"
    return "start"


def note(settings: Settings, started_at: datetime, exc: BaseException) -> None:
    """Append one failed night (never raises: it runs while reporting another failure)."""
    row = {"started_at": started_at.astimezone(timezone.utc).isoformat(), "status": "failed",
           "failed_step": classify(exc), "reason": f"{type(exc).__name__}: {exc}"[:2000],
           "finished_at": datetime.now(timezone.utc).isoformat()}
    try:
        p = _path(settings)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
    except OSError:
        pass


def read(settings: Settings, limit: int = 10) -> pd.DataFrame:
    """The newest unrecorded failures first (a damaged line is skipped, not fatal)."""
    p = _path(settings)
    rows = []
    if p.exists():
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    df = pd.DataFrame(rows, columns=["started_at", "status", "failed_step", "reason", "finished_at"])
    for c in ("started_at", "finished_at"):
        df[c] = pd.to_datetime(df[c], utc=True)
    return df.sort_values("started_at", ascending=False).head(limit).reset_index(drop=True)


def merge(nights: pd.DataFrame, early: pd.DataFrame) -> pd.DataFrame:
    """Recorded nights with the unrecorded failures. A night that recorded its start and then hit
    the lock mid-run left a `running` row it could not close: that row takes the failure (one
    night, shown once), matched by a start inside the failure's [started_at - 5 s, finished_at]."""
    if not len(early):
        return nights
    if not len(nights):
        return early
    nights = nights.copy()
    started = pd.to_datetime(nights["started_at"], utc=True)
    used = []
    for j, e in early.iterrows():
        cand = nights.index[(nights["status"] == "running") & (started >= e["started_at"] - pd.Timedelta(seconds=5))
                            & (started <= e["finished_at"])]
        if len(cand):
            i = cand[0]
            nights.loc[i, ["status", "failed_step", "reason"]] = ["failed", e["failed_step"], e["reason"]]
            if "finished_at" in nights:
                nights.loc[i, "finished_at"] = e["finished_at"]
            used.append(j)
    rest = early.drop(index=used)
    return pd.concat([x for x in (nights, rest) if len(x)], ignore_index=True)
