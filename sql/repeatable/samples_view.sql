-- The one relation through which the query compiler and the rollup engine read raw
-- samples: the hot hypertable and, UNION ALL, the samples that tenants' retention
-- overrides keep past the raw window (storage/retention.py). The two never hold the
-- same sample: a sample moves to the twin in the transaction that drops its chunk.
-- A per-series time-range read keeps chunk exclusion and an index scan on
-- (series_id, time) in both branches. Re-created on every `vigil migrate`.
CREATE OR REPLACE VIEW vigil.samples AS
SELECT time, series_id, value
FROM vigil.samples_raw
UNION ALL
SELECT time, series_id, value
FROM vigil.samples_retained;
