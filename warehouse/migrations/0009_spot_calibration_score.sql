-- idlecap warehouse, version 9: which risk score a spot calibration curve maps: 'window' (the window-risk model) or 'forecast'
-- (the older forecast-quantile score; rows from before this version). Pricing applies only a
-- curve fitted on the score it publishes.
ALTER TABLE spot_risk_calibration ADD COLUMN risk_model VARCHAR;
