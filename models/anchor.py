"""Short-lead anchoring: every model's first hours are the last observation, then it fades in.

Idle capacity moves in level shifts (a job starts, a job ends) that last longer than an hour,
so in the first hours nothing beats the last observation (on the Helios sample every shipped
model lost to it at leads 2-3, by 4% to 6x). The wrapper moves the inner forecast (mean and
every quantile, so the model's spread is kept) to the last observed value for the first
`hold_hours`, then hands over: the remaining gap fades by `decay` an hour. Histories whose last
3 hours are unobserved are not moved (there is nothing recent to anchor to).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.panel import panel_from_long
from models.base import QCOLS, Forecaster

RECENT_HOURS = 3


def weights(lead: np.ndarray, decay: float, hold_hours: int) -> np.ndarray:
    """Weight of the last observation at each lead (1 = persistence, 0 = the model alone)."""
    lead = np.asarray(lead)
    return np.where(lead <= hold_hours, 1.0, float(decay) ** np.clip(lead - hold_hours, 0, None))


class ShortLeadAnchor(Forecaster):
    """Wrap `forecaster`: leads 1..`hold_hours` at the last observation, then the gap to the model
    fades by `decay` (in [0, 1)) an hour."""

    def __init__(self, forecaster: Forecaster, decay: float = 0.95, hold_hours: int = 3):
        self.forecaster = forecaster
        self.decay = decay
        self.hold_hours = hold_hours

    @property
    def name(self) -> str:
        return self.forecaster.name

    def fit(self, df: pd.DataFrame, calendar: pd.DataFrame | None = None) -> "ShortLeadAnchor":
        if not 0 <= self.decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {self.decay}")
        self.forecaster.fit(df, calendar)
        self.panel_ = panel_from_long(df)
        return self

    def predict(self, h: int, X_df: pd.DataFrame | None = None, new_df: pd.DataFrame | None = None) -> pd.DataFrame:
        return self.anchor(self.forecaster.predict(h, X_df=X_df, new_df=new_df), self._history(new_df))

    def anchor(self, fc: pd.DataFrame, panel) -> pd.DataFrame:
        """The inner forecast `fc` moved to the last observation of `panel` (the history it came from)."""
        last = panel.last_observed()
        ok = (last >= panel.T - RECENT_HOURS) & (last >= 0)
        y_last = pd.Series(np.where(ok, panel.y[np.arange(panel.n), np.clip(last, 0, None)], np.nan),
                           index=panel.ids.astype(str))
        fc = fc.sort_values(["unique_id", "ds"]).reset_index(drop=True)
        lead = fc.groupby("unique_id").cumcount().to_numpy() + 1  # 1 = the first forecast hour
        gap = np.nan_to_num(fc["unique_id"].map(y_last).to_numpy(float) - fc["mean"].to_numpy(float), nan=0.0)
        shift = gap * weights(lead, self.decay, self.hold_hours)
        cap = fc["unique_id"].map(pd.Series(panel.capacity[:, -1], index=panel.ids.astype(str))).to_numpy(float)
        fc["mean"] = np.clip(fc["mean"].to_numpy(float) + shift, 0, cap)
        q = np.sort(fc[QCOLS].to_numpy(float) + shift[:, None], axis=1)
        fc[QCOLS] = np.clip(q, 0, cap[:, None])
        return fc
