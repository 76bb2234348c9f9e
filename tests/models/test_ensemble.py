"""PerPoolSelector: each member forecasts only its own pools, with the same result as forecasting all."""
from __future__ import annotations

import pandas as pd

from models.catalog import build
from models.ensemble import PerPoolSelector


def test_members_forecast_only_their_pools_and_agree_with_forecasting_every_pool(fleet) -> None:
    df, cal = fleet
    pools = sorted(df["unique_id"].unique())
    # one pool stopped reporting 5 hours early: its forecast must still start at the fleet's origin
    df = df[~((df["unique_id"] == pools[0]) & (df["ds"] > df["ds"].max() - pd.Timedelta(hours=5)))]
    members = [build("snaive_24", 48), build("lgbm", 48, {"n_estimators": 30, "n_jobs": 1}), build("mstl", 48)]
    choice = {pools[0]: "lgbm", pools[1]: "mstl", pools[2]: "mstl"}  # the rest: the default
    sel = PerPoolSelector(members, choice=choice, default="snaive_24").fit(df, cal)
    got = sel.predict(48, X_df=cal, new_df=df)

    ref = []
    for name, m in sel.members_.items():
        fc = m.predict(48, X_df=cal, new_df=df)  # every pool, then keep the chosen ones
        ref.append(fc[fc["unique_id"].map(lambda u: choice.get(u, "snaive_24")) == name])
    ref = pd.concat(ref).sort_values(["unique_id", "ds"], ignore_index=True)
    assert set(got["unique_id"]) == set(pools) and got["ds"].min() == df["ds"].max() + pd.Timedelta(hours=1)
    cols = ["unique_id", "ds", "mean", "q05", "q50", "q95"]
    pd.testing.assert_frame_equal(got[cols], ref[cols])
    assert got.groupby("unique_id")["source_model"].first().to_dict() == {
        u: choice.get(u, "snaive_24") for u in pools}
