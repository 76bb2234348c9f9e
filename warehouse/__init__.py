"""DuckDB telemetry warehouse: schema + migrations, source adapters, ingest, pool_hourly, calendar."""
