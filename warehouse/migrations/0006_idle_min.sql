-- idlecap warehouse, version 6: the fewest idle GPUs at any sample of a pool-hour (sample-level
-- truth for reserved promises). Hours refreshed before this version keep NULL until
-- `idlecap refresh --rebuild` recomputes them; readers treat NULL as "not known at sample level".

ALTER TABLE pool_hourly ADD COLUMN idle_gpus_min DOUBLE;
