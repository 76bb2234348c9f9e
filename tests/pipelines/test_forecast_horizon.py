import pandas as pd

from pipelines.forecast_flow import full_horizon, horizon_from
from pipelines.settings import ForecastSettings


def test_daily_horizon_gives_whole_days_from_any_origin_hour():
    f = ForecastSettings(horizon_hours=168, daily_horizon_days=30)
    for hour in range(24):
        origin = pd.Timestamp("2026-03-01", tz="UTC") + pd.Timedelta(hours=hour)
        H = horizon_from(origin, f)
        first_midnight = (24 - hour) % 24
        assert (H - first_midnight) // 24 >= 30  # 30 whole UTC days after the first midnight
        assert H <= full_horizon(f)  # the served model was trained that far
    assert horizon_from(pd.Timestamp("2026-03-01", tz="UTC"), ForecastSettings(daily_horizon_days=0)) == 168
