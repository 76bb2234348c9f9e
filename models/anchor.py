"""Short-lead anchoring: start every model's forecast path at the last observed hour.

Idle capacity moves in level shifts (a job starts, a job ends) that last longer than an hour,
so in the first hours nothing beats the last observation; a model fitted to daily and weekly
shape can miss a shift that already happened. The wrapper shifts the inner forecast (mean and
every quantile) by the gap between the last observed hour and the model's first hour, fading as
decay^(lead - 1): lead 1 is the last observation itself (persistence, plus the model's spread),
and by a day out the model speaks alone. Histories whose last 3 hours are unobserved are not
shifted (there is nothing recent to anchor to).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.panel import panel_from_long
from models.base import QCOLS, Forecaster

RECENT_HOURS = 3


class ShortLeadAnchor(Forecaster):
    """Wrap `forecaster`; `decay` in [0, 1) is how much of the first hour's gap is left an hour later."""

    def __init__(self, forecaster: Forecaster, decay: float = 0.85):
        self.forecaster = forecaster
        self.decay = decay

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
        fc = self.forecaster.predict(h, X_df=X_df, new_df=new_df)
        panel = self._history(new_df)
        last = panel.last_observed()
        ok = (last >= panel.T - RECENT_HOURS) & (last >= 0)
        y_last = pd.Series(np.where(ok, panel.y[np.arange(panel.n), np.clip(last, 0, None)], np.nan),
                           index=panel.ids.astype(str))
        fc = fc.sort_values(["unique_id", "ds"]).reset_index(drop=True)
        lead = fc.groupby("unique_id").cumcount().to_numpy()  # 0 = the first forecast hour
        first = fc.groupby("unique_id")["mean"].transform("first").to_numpy()
        gap = np.nan_to_num(fc["unique_id"].map(y_last).to_numpy(float) - first, nan=0.0)
        shift = gap * self.decay ** lead
        cap = fc["unique_id"].map(pd.Series(panel.capacity[:, -1], index=panel.ids.astype(str))).to_numpy(float)
        fc["mean"] = np.clip(fc["mean"].to_numpy(float) + shift, 0, cap)
        q = np.sort(fc[QCOLS].to_numpy(float) + shift[:, None], axis=1)
        fc[QCOLS] = np.clip(q, 0, cap[:, None])
        return fc
