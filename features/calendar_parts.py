"""Clock features of a target hour: hour of day, day of week, public holiday.

Hour and weekday are taken in the fleet's local time zone (the rhythm of the people who
submit jobs); holidays come from the `holidays` package for a configurable country.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd


@lru_cache(maxsize=32)
def _holiday_days(country: str, years: tuple[int, ...]) -> frozenset:
    import holidays

    try:
        cal = holidays.country_holidays(country, years=list(years))
    except NotImplementedError as exc:  # unknown country code
        raise ValueError(f"unknown holidays country {country!r}: {exc}") from None
    return frozenset(cal.keys())


def calendar_parts(ds: pd.DatetimeIndex, country: str | None = None, tz: str = "UTC") -> dict[str, np.ndarray]:
    """hour (0-23), dow (0=Mon), weekend (0/1), holiday (0/1) for each timestamp."""
    local = pd.DatetimeIndex(ds).tz_convert(tz)
    out = {
        "hour": local.hour.to_numpy(np.int16),
        "dow": local.dayofweek.to_numpy(np.int16),
    }
    out["weekend"] = (out["dow"] >= 5).astype(np.int8)
    if country:
        days = local.normalize().tz_localize(None)
        years = tuple(sorted(set(days.year.tolist())))
        hol = _holiday_days(country, years)
        uniq, inv = np.unique(days.to_numpy(), return_inverse=True)
        flags = np.array([pd.Timestamp(d).date() in hol for d in uniq], dtype=np.int8)
        out["holiday"] = flags[inv]
    else:
        out["holiday"] = np.zeros(len(local), dtype=np.int8)
    return out
