-- idlecap warehouse, version 1: inventory, telemetry, ingest log, quarantine, calendar, pool_hourly.
-- Uniqueness of telemetry (node_id, ts) is enforced by the ingest (dedup + replace in one
-- transaction per file), not by an index: an ART index on hundreds of millions of samples
-- costs more on every load than it protects.

CREATE SEQUENCE ingest_id_seq START 1;

CREATE TABLE pools (
    pool        VARCHAR PRIMARY KEY,
    gpu_model   VARCHAR NOT NULL,
    first_seen  TIMESTAMPTZ,
    last_seen   TIMESTAMPTZ
);

CREATE TABLE nodes (
    node_id            VARCHAR PRIMARY KEY,
    pool               VARCHAR NOT NULL,
    gpu_model          VARCHAR NOT NULL,
    gpus_total         INTEGER NOT NULL,
    sample_interval_s  INTEGER NOT NULL,
    first_seen         TIMESTAMPTZ NOT NULL,
    last_seen          TIMESTAMPTZ NOT NULL,
    source             VARCHAR NOT NULL
);

CREATE TABLE telemetry (
    ts              TIMESTAMPTZ NOT NULL,
    node_id         VARCHAR NOT NULL,
    pool            VARCHAR NOT NULL,
    gpu_model       VARCHAR NOT NULL,
    gpus_total      INTEGER NOT NULL,
    gpus_allocated  INTEGER,
    gpu_util        DOUBLE,
    source          VARCHAR NOT NULL,
    quality_flag    VARCHAR,
    ingest_id       BIGINT NOT NULL
);

-- Samples replaced by a corrected re-delivery of their node-hour: kept, never deleted.
CREATE TABLE telemetry_superseded (
    ts              TIMESTAMPTZ NOT NULL,
    node_id         VARCHAR NOT NULL,
    pool            VARCHAR NOT NULL,
    gpu_model       VARCHAR NOT NULL,
    gpus_total      INTEGER NOT NULL,
    gpus_allocated  INTEGER,
    gpu_util        DOUBLE,
    source          VARCHAR NOT NULL,
    quality_flag    VARCHAR,
    ingest_id       BIGINT NOT NULL,
    superseded_by   BIGINT NOT NULL
);

CREATE TABLE ingest_log (
    ingest_id         BIGINT PRIMARY KEY,
    kind              VARCHAR NOT NULL,      -- telemetry | calendar
    source            VARCHAR NOT NULL,
    file_path         VARCHAR NOT NULL,
    content_hash      VARCHAR,
    size_bytes        BIGINT,
    status            VARCHAR NOT NULL,      -- running | loaded | skipped_same_file | failed | aborted
    rows_in           BIGINT,
    rows_loaded       BIGINT,
    rows_quarantined  BIGINT,
    rows_duplicate    BIGINT,
    rows_replaced     BIGINT,                -- stored samples superseded by this file (late data)
    node_hours_replaced BIGINT,
    error             VARCHAR,
    note              VARCHAR,
    started_at        TIMESTAMPTZ NOT NULL,
    finished_at       TIMESTAMPTZ,
    duration_s        DOUBLE
);

CREATE TABLE quarantine (
    ingest_id       BIGINT NOT NULL,
    source          VARCHAR NOT NULL,
    source_file     VARCHAR NOT NULL,
    row_number      BIGINT,
    reason          VARCHAR NOT NULL,
    detail          VARCHAR,
    raw             VARCHAR,
    quarantined_at  TIMESTAMPTZ NOT NULL
);

-- Planned internal runs. One row per version of a run's plan; `known_at` is when that
-- version was known, so backtests can ask for the plan as known at any time.
CREATE TABLE training_calendar (
    run_id     VARCHAR NOT NULL,
    pool       VARCHAR NOT NULL,
    start      TIMESTAMPTZ NOT NULL,
    "end"      TIMESTAMPTZ NOT NULL,
    gpus       INTEGER NOT NULL,
    priority   INTEGER NOT NULL,
    status     VARCHAR NOT NULL,   -- planned | cancelled
    known_at   TIMESTAMPTZ NOT NULL,
    ingest_id  BIGINT NOT NULL,
    PRIMARY KEY (run_id, known_at)
);

-- (pool, hour) aggregate of telemetry; refreshed incrementally from pool_hourly_dirty.
CREATE TABLE pool_hourly (
    pool             VARCHAR NOT NULL,
    ts               TIMESTAMPTZ NOT NULL,
    gpu_model        VARCHAR NOT NULL,
    gpus_total       DOUBLE NOT NULL,
    gpus_busy        DOUBLE NOT NULL,
    idle_gpu_hours   DOUBLE NOT NULL,
    coverage         DOUBLE NOT NULL,
    samples          BIGINT NOT NULL,
    nodes_reporting  INTEGER NOT NULL,
    nodes_expected   INTEGER NOT NULL,
    quality_flag     VARCHAR,
    refreshed_at     TIMESTAMPTZ NOT NULL
);

-- Hours whose telemetry changed since the last refresh (written in the same transaction as the load).
CREATE TABLE pool_hourly_dirty (
    pool  VARCHAR NOT NULL,
    ts    TIMESTAMPTZ NOT NULL
);
