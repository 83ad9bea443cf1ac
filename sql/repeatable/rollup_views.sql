-- The relations through which the query compiler and the rollup engine read rollup
-- tiers (the tables themselves are written only by storage/rollups.py), each UNION ALL
-- the buckets that tenants' retention overrides keep past the tier's window
-- (storage/retention.py; a bucket moves to the twin in the transaction that drops its
-- chunk). Re-created on every `vigil migrate`.
CREATE OR REPLACE VIEW vigil.rollups_1m AS
SELECT * FROM vigil.rollup_1m UNION ALL SELECT * FROM vigil.rollup_1m_retained;
CREATE OR REPLACE VIEW vigil.rollups_1h AS
SELECT * FROM vigil.rollup_1h UNION ALL SELECT * FROM vigil.rollup_1h_retained;
CREATE OR REPLACE VIEW vigil.rollups_1d AS
SELECT * FROM vigil.rollup_1d UNION ALL SELECT * FROM vigil.rollup_1d_retained;
