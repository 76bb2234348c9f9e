-- idlecap warehouse, version 5: GPU catalogue details on price items, and the per-pool pricing
-- findings of every pricing run (why a pool could or could not be sold, and how to fix it).

ALTER TABLE price_sheet_items ADD COLUMN gpu_class VARCHAR;             -- catalogue class of gpu_model
ALTER TABLE price_sheet_items ADD COLUMN reference_gpu_model VARCHAR;   -- the cloud GPU it is compared with
ALTER TABLE price_sheet_items ADD COLUMN reference_list_price DOUBLE;   -- that reference's own price per GPU-hour
ALTER TABLE price_sheet_items ADD COLUMN performance_factor DOUBLE;     -- reference_price = list price x factor

CREATE TABLE pricing_findings (
    run_at          TIMESTAMPTZ NOT NULL,      -- when the pricing pass stored them (join runs on mlflow_run_id)
    mlflow_run_id   VARCHAR,
    pool            VARCHAR NOT NULL,
    gpu_model       VARCHAR,                   -- as telemetry names it
    gpu_class       VARCHAR,                   -- catalogue class (NULL when unknown)
    cause           VARCHAR NOT NULL,          -- priced | unknown_gpu | no_reference | not_competitive | no_capacity | held | ...
    product         VARCHAR,                   -- spot | reserved (for not_competitive), else NULL
    detail          VARCHAR NOT NULL,          -- one line, with the numbers
    action          VARCHAR                    -- what an operator can do about it
);
