"""Hourly pool series -> feature frames (calendar, lags, planned-run features). Not built yet."""
