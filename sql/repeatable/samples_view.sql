-- The one relation through which the query compiler and the rollup engine read raw
-- samples. Re-created on every `vigil migrate`.
CREATE OR REPLACE VIEW vigil.samples AS
SELECT time, series_id, value
FROM vigil.samples_raw;
