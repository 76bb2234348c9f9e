"""Backtest the candidates, score them, and choose a model per pool (the training recipe).

Kept apart from Prefect and MLflow so tests and the CLI run the same steps the nightly flow does.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from models.backtest import add_selected, cross_validation
from models.base import Forecaster
from models.ensemble import PerPoolSelector
from models.metrics import evaluate, insample_scale

SELECTED = "selected"


@dataclass
class BacktestReport:
    cv: pd.DataFrame  # every candidate's backtest forecasts, plus the honest per-pool selection
    per_pool: pd.DataFrame
    overall: pd.DataFrame
    choice: dict[str, str]  # pool -> candidate with the lowest backtest MAE on that pool
    default: str  # candidate with the lowest overall MAE (for pools not in `choice`)
    origins: list[pd.Timestamp] = field(default_factory=list)

    def score(self, model: str, metric: str) -> float:
        row = self.overall[self.overall["model"] == model]
        if row.empty or metric not in row:
            raise KeyError(f"no {metric!r} for model {model!r} in the backtest")
        return float(row[metric].iloc[0])


def backtest_and_select(
    candidates: list[Forecaster],
    df: pd.DataFrame,
    calendar: pd.DataFrame | None,
    h: int,
    n_windows: int,
    step: int,
    window: str = "expanding",
    window_size: int | None = None,
    season: int = 24,
    on_window: Callable[[int, int, str], None] | None = None,
) -> BacktestReport:
    """Rolling-origin backtest of every candidate, metrics, and the per-pool choice."""
    cv = cross_validation(candidates, df, calendar, h=h, n_windows=n_windows, step=step, window=window,
                          window_size=window_size, on_window=on_window)
    return select_from_cv(cv, [c.name for c in candidates], df, season)


def select_from_cv(cv: pd.DataFrame, names: list[str], df: pd.DataFrame, season: int = 24) -> BacktestReport:
    """Metrics and the per-pool choice from finished backtest windows (wherever they ran)."""
    if len(names) > 1:
        cv = add_selected(cv, names, name=SELECTED)
    scale = insample_scale(df, cv["cutoff"].unique(), season=season)
    # ratios against a baseline that was not run are NaN, never silently against another model
    per_pool, overall = evaluate(cv, scale, naive="naive", seasonal_naive=f"snaive_{season}")
    cand = per_pool[per_pool["model"].isin(names)]
    choice = cand.sort_values(["unique_id", "mae"]).drop_duplicates("unique_id").set_index("unique_id")["model"].to_dict()
    default = overall[overall["model"].isin(names)].sort_values("mae")["model"].iloc[0]
    return BacktestReport(cv, per_pool, overall, choice, default, sorted(cv["cutoff"].unique()))


def final_forecaster(report: BacktestReport, candidates: list[Forecaster]) -> PerPoolSelector:
    """An unfitted per-pool selector over the candidates any pool (or the default) chose."""
    used = set(report.choice.values()) | {report.default}
    members = [c for c in candidates if c.name in used]
    return PerPoolSelector(members, choice=dict(report.choice), default=report.default)
