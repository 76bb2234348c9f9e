"""Combinations of forecasters: a mean ensemble and a per-pool selection chosen by backtest."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone

from models.base import QCOLS, Forecaster, check_horizon


class MeanEnsemble(Forecaster):
    """Average of the members' means and quantiles (averaged quantiles never cross)."""

    model_name = "ensemble"

    def __init__(self, members: list[Forecaster], alias: str | None = None):
        self.members = members
        self.alias = alias

    def fit(self, df: pd.DataFrame, calendar: pd.DataFrame | None = None) -> "MeanEnsemble":
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        self.members_ = [clone(m).fit(df, calendar) for m in self.members]
        return self

    def predict(self, h: int, X_df: pd.DataFrame | None = None, new_df: pd.DataFrame | None = None) -> pd.DataFrame:
        h = check_horizon(h)
        if not hasattr(self, "members_"):
            raise RuntimeError("MeanEnsemble is not fitted")
        return self.combine([m.predict(h, X_df=X_df, new_df=new_df) for m in self.members_])

    def combine(self, fcs: list[pd.DataFrame]) -> pd.DataFrame:
        """The ensemble forecast from its members' forecasts (made on the same history and horizon)."""
        out = fcs[0][["unique_id", "ds"]].copy()
        out["model"] = self.name
        vals = np.mean([f[["mean", *QCOLS]].to_numpy() for f in fcs], axis=0)
        out[["mean", *QCOLS]] = vals
        return out


class PerPoolSelector(Forecaster):
    """Each pool forecast by the member its backtest chose; unknown pools get `default`.

    `choice` maps pool -> member name (a member's `name`); members are fitted together.
    """

    model_name = "selected"

    def __init__(self, members: list[Forecaster], choice: dict[str, str] | None = None,
                 default: str | None = None, alias: str | None = None):
        self.members = members
        self.choice = choice
        self.default = default
        self.alias = alias

    def fit(self, df: pd.DataFrame, calendar: pd.DataFrame | None = None) -> "PerPoolSelector":
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique, got {names}")
        unknown = set((self.choice or {}).values()) - set(names)
        if unknown:
            raise ValueError(f"choice names members that do not exist: {sorted(unknown)}")
        self.default_ = self.default or names[0]
        if self.default_ not in names:
            raise ValueError(f"default {self.default_!r} is not a member")
        self.members_ = {m.name: clone(m).fit(df, calendar) for m in self.members}
        return self

    def predict(self, h: int, X_df: pd.DataFrame | None = None, new_df: pd.DataFrame | None = None) -> pd.DataFrame:
        h = check_horizon(h)
        if not hasattr(self, "members_"):
            raise RuntimeError("PerPoolSelector is not fitted")
        choice = self.choice or {}
        fcs = []
        if new_df is not None:
            # each member forecasts only the pools that chose it: a per-pool model's cost is never
            # paid for pools that do not use it (a global model's features are per pool, so a subset
            # of the history gives the same forecasts for those pools)
            from models.backtest import _pad_to

            pick = new_df["unique_id"].map(lambda u: choice.get(u, self.default_))
            origin = pd.Timestamp(new_df["ds"].max()) + pd.Timedelta(hours=1)  # the same for every subset
            for name, m in self.members_.items():
                part = new_df[pick == name]
                if len(part):
                    fcs.append(m.predict(h, X_df=X_df, new_df=_pad_to(part, origin)))
        else:
            needed = None
            for name, m in self.members_.items():
                fc = m.predict(h, X_df=X_df, new_df=new_df)
                if needed is None:
                    needed = fc["unique_id"].map(lambda u: choice.get(u, self.default_))
                    needed = dict(zip(fc["unique_id"], needed))
                fcs.append(fc[fc["unique_id"].map(needed) == name])
        if not fcs:
            raise ValueError("no pool to forecast: new_df is empty")
        out = pd.concat(fcs, ignore_index=True)
        out["source_model"] = out["model"]
        out["model"] = self.name
        return out.sort_values(["unique_id", "ds"], ignore_index=True)
