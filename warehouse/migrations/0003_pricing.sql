-- idlecap warehouse, version 3: price sheet history, every pricing run (published, unchanged or
-- held), bookings (what customers took from a sheet) and the demand curves fitted from them.

CREATE TABLE price_sheets (
    version         INTEGER PRIMARY KEY,
    generated_at    TIMESTAMPTZ NOT NULL,
    valid_from      TIMESTAMPTZ NOT NULL,
    valid_until     TIMESTAMPTZ NOT NULL,
    data_through    TIMESTAMPTZ NOT NULL,
    mlflow_run_id   VARCHAR,
    forecast_id     VARCHAR,
    currency        VARCHAR NOT NULL,
    content_sha256  VARCHAR NOT NULL,
    inputs_sha256   VARCHAR NOT NULL,      -- forecast, as_of hour, reference file, settings, bookings
    items           INTEGER NOT NULL,
    json_path       VARCHAR NOT NULL,
    parquet_path    VARCHAR NOT NULL
);

-- Every candidate item of a sheet, offered or not, with the internal numbers behind its price.
CREATE TABLE price_sheet_items (
    version                 INTEGER NOT NULL,
    pool                    VARCHAR NOT NULL,
    gpu_model               VARCHAR,
    region                  VARCHAR,
    product                 VARCHAR,
    start                   TIMESTAMPTZ,
    "end"                   TIMESTAMPTZ,
    hours                   INTEGER,
    price_per_gpu_hour      DOUBLE,
    gpus_offered            INTEGER,
    interruption_risk       DOUBLE,
    reference_provider      VARCHAR,
    reference_region        VARCHAR,
    reference_sku           VARCHAR,
    reference_product       VARCHAR,
    reference_price         DOUBLE,
    reference_as_of         DATE,
    discount_vs_reference   DOUBLE,
    floor                   DOUBLE,
    ceiling                 DOUBLE,
    spot_expected_price     DOUBLE,
    last_price              DOUBLE,
    base_price              DOUBLE,
    guardrails              VARCHAR[],
    offered                 BOOLEAN NOT NULL,
    withdraw_reason         VARCHAR,
    expected_idle_gpus      DOUBLE,
    expected_gpu_hours_sold DOUBLE,
    window_min_quantile     DOUBLE,
    history_cap             DOUBLE,           -- most GPUs the fleet's historical drawdown allows
    newsvendor_level        DOUBLE,
    gpus_total              DOUBLE
);

CREATE TABLE pricing_runs (
    run_at          TIMESTAMPTZ NOT NULL,
    as_of           TIMESTAMPTZ NOT NULL,
    status          VARCHAR NOT NULL,      -- published | unchanged | held
    version         INTEGER,               -- the sheet in force after the run
    reason          VARCHAR,
    mlflow_run_id   VARCHAR
);

CREATE TABLE bookings (
    booking_id          VARCHAR PRIMARY KEY,
    sheet_version       INTEGER NOT NULL,
    pool                VARCHAR NOT NULL,
    product             VARCHAR NOT NULL,
    start               TIMESTAMPTZ NOT NULL,
    gpus                INTEGER NOT NULL CHECK (gpus > 0),
    price_per_gpu_hour  DOUBLE NOT NULL CHECK (price_per_gpu_hour > 0),
    booked_at           TIMESTAMPTZ NOT NULL,
    customer            VARCHAR
);

CREATE TABLE demand_fits (
    fitted_at           TIMESTAMPTZ NOT NULL,
    gpu_model           VARCHAR NOT NULL,
    product             VARCHAR NOT NULL,
    elasticity          DOUBLE NOT NULL,
    share_at_reference  DOUBLE NOT NULL,
    source              VARCHAR NOT NULL,  -- fit | prior
    n_items             INTEGER NOT NULL
);
