import numpy as np
import pandas as pd
import pytest

from features.panel import panel_from_long


def _df():
    ds = pd.date_range("2026-01-01", periods=5, freq="h", tz="UTC")
    return pd.DataFrame({"unique_id": ["a"] * 5, "ds": ds, "y": [1.0, 2, 3, 4, 5], "gpus_total": 8})


def test_missing_hours_stay_nan_not_zero():
    df = _df().drop(index=2)
    p = panel_from_long(df)
    assert p.T == 5 and np.isnan(p.y[0, 2]) and p.capacity[0, 2] == 8


def test_duplicate_hours_and_off_hour_timestamps_are_errors():
    df = _df()
    with pytest.raises(ValueError, match="duplicate"):
        panel_from_long(pd.concat([df, df.iloc[:1]]))
    df.loc[0, "ds"] = df.loc[0, "ds"] + pd.Timedelta(minutes=5)
    with pytest.raises(ValueError, match="whole hours"):
        panel_from_long(df)
    with pytest.raises(ValueError, match="lacks columns"):
        panel_from_long(_df().drop(columns="gpus_total"))
