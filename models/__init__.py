"""Forecasters, backtesting, metrics, registry. Not built yet."""
