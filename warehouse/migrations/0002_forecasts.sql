-- idlecap warehouse, version 2: forecasts (DESIGN.md forecast frame) and the runs that wrote them.
-- A forecast run is keyed by forecast_id = model version + origin: re-running the same champion
-- on the same data replaces its own rows and nothing else (idempotent).

CREATE TABLE forecast_runs (
    forecast_id     VARCHAR PRIMARY KEY,
    origin          TIMESTAMPTZ NOT NULL,   -- first forecast hour; history is everything before it
    data_through    TIMESTAMPTZ NOT NULL,   -- last observed hour
    model_name      VARCHAR NOT NULL,
    model_version   VARCHAR NOT NULL,
    run_id          VARCHAR NOT NULL,       -- MLflow run of the training that produced the model
    horizon_hours   INTEGER NOT NULL,
    daily_days      INTEGER NOT NULL,
    pools           INTEGER NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE forecasts (
    forecast_id  VARCHAR NOT NULL,
    grain        VARCHAR NOT NULL,          -- 'hour': idle GPUs in the hour; 'day': idle GPU-hours in the UTC day
    unique_id    VARCHAR NOT NULL,          -- pool
    ds           TIMESTAMPTZ NOT NULL,
    model        VARCHAR NOT NULL,          -- the member model that produced this pool's forecast
    mean         DOUBLE NOT NULL,
    q05 DOUBLE NOT NULL, q10 DOUBLE NOT NULL, q25 DOUBLE NOT NULL, q50 DOUBLE NOT NULL,
    q75 DOUBLE NOT NULL, q90 DOUBLE NOT NULL, q95 DOUBLE NOT NULL,
    gpus_total   DOUBLE NOT NULL,
    origin       TIMESTAMPTZ NOT NULL,
    run_id       VARCHAR NOT NULL,
    PRIMARY KEY (forecast_id, grain, unique_id, ds)
);
