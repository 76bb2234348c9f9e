-- idlecap warehouse, version 4: one row per nightly run (what it did, how it ended, why).

CREATE TABLE nightly_runs (
    night_id        VARCHAR PRIMARY KEY,       -- the Prefect flow run id (or a uuid outside Prefect)
    started_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ,
    status          VARCHAR NOT NULL,          -- running | published | unchanged | held | failed
    failed_step     VARCHAR,                   -- ingest | train | forecast | price | review, when failed
    reason          VARCHAR,
    files_ingested  INTEGER,
    rows_loaded     BIGINT,
    trained         BOOLEAN,
    train_reason    VARCHAR,
    forecast_id     VARCHAR,
    sheet_version   INTEGER,                   -- the sheet live after the night
    data_through    TIMESTAMPTZ,
    mlflow_run_id   VARCHAR
);
