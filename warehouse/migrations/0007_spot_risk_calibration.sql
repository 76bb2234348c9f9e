-- idlecap warehouse, version 7: the spot interruption-risk calibration curves fitted by the
-- pricing backtest (`idlecap price-backtest`); pricing applies the newest one.

CREATE TABLE spot_risk_calibration (
    fitted_at         TIMESTAMPTZ NOT NULL,
    mlflow_run_id     VARCHAR,
    n_blocks          INTEGER NOT NULL,     -- spot blocks the curve was refitted on (every origin)
    x                 DOUBLE[] NOT NULL,    -- raw risk knots (isotonic thresholds)
    y                 DOUBLE[] NOT NULL,    -- calibrated probability at each knot
    early_origins     VARCHAR,              -- the origins that chose the map
    later_origins     VARCHAR,              -- the origins it was scored on
    brier_raw         DOUBLE,               -- on the later origins
    brier_calibrated  DOUBLE,
    brier_constant    DOUBLE
);
