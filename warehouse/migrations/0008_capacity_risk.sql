-- idlecap warehouse, version 8: what the window-risk model said about each priced item.

ALTER TABLE price_sheet_items ADD COLUMN break_probability DOUBLE;  -- reserved: P(the promise standing in the window breaks)
ALTER TABLE price_sheet_items ADD COLUMN risk_value DOUBLE;         -- spot: value of a block vs a sure hour, after its risk

