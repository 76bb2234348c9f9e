-- idlecap warehouse, version 8: what the window-risk model said about each priced item.

ALTER TABLE price_sheet_items ADD COLUMN break_probability DOUBLE;  -- reserved: P(the promise standing in the window breaks)
ALTER TABLE price_sheet_items ADD COLUMN risk_value DOUBLE;         -- spot: value of a block vs a sure hour, after its risk

-- which risk score a spot calibration curve maps: 'window' (the window-risk model) or 'forecast'
-- (the older forecast-quantile score; rows from before this version). Pricing applies only a
-- curve fitted on the score it publishes.
ALTER TABLE spot_risk_calibration ADD COLUMN risk_model VARCHAR;
