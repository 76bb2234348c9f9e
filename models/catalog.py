"""Candidate forecasters by name, so configuration can list them ("naive", "lgbm", ...)."""
from __future__ import annotations

from typing import Any

from models.anchor import ShortLeadAnchor
from models.base import Forecaster
from models.ensemble import MeanEnsemble
from models.lgbm import LGBMDirect
from models.naive import Naive, SeasonalNaive
from models.seasonal import MSTLForecaster

KNOWN = ("naive", "snaive_24", "snaive_168", "mstl", "lgbm", "lgbm_nocal", "ensemble")


def build(name: str, horizon: int, lgbm: dict[str, Any] | None = None, processes: int = 1,
          anchor_decay: float = 0.95) -> Forecaster:
    """One unfitted forecaster. `lgbm` holds LGBMDirect keyword arguments (country, tz, trees...);
    `processes` parallelises the per-pool statistical model; every model but `naive` (which is
    the last observation already) starts its path at the last observed hour (`anchor_decay`, 0 = off)."""
    m = _build(name, horizon, dict(lgbm or {}), processes)
    return ShortLeadAnchor(m, anchor_decay) if anchor_decay > 0 and name != "naive" else m


def _build(name: str, horizon: int, lgbm: dict[str, Any], processes: int) -> Forecaster:
    if name == "naive":
        return Naive()
    if name.startswith("snaive_"):
        return SeasonalNaive(int(name.split("_", 1)[1]))
    if name == "mstl":
        return MSTLForecaster(n_jobs=processes)
    if name == "lgbm":
        return LGBMDirect(horizon=horizon, use_calendar=True, **lgbm)
    if name == "lgbm_nocal":
        return LGBMDirect(horizon=horizon, use_calendar=False, **lgbm)
    if name == "ensemble":
        return MeanEnsemble([LGBMDirect(horizon=horizon, **lgbm), MSTLForecaster(n_jobs=processes)])
    raise ValueError(f"unknown model {name!r}; known: {', '.join(KNOWN)}")


def build_all(names: list[str], horizon: int, lgbm: dict[str, Any] | None = None,
              processes: int = 1, anchor_decay: float = 0.95) -> list[Forecaster]:
    if not names:
        raise ValueError("no candidate models configured")
    return [build(n, horizon, lgbm, processes, anchor_decay) for n in names]
