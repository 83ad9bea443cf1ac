-- Named queries of retention (storage/retention.py). `{hot}` and `{twin}` are a tier's
-- hypertable and its retained twin, `{time}` their time column and `{kept}` the query
-- retained_series, all filled in with psycopg.sql; values are bind parameters.

-- select_retention_overrides --
-- A tenant's retention overrides, by tier and pattern.
SELECT tier, pattern, retention, updated_at
FROM vigil.retention_override
WHERE tenant_id = %(tenant_id)s
ORDER BY array_position(ARRAY['raw', '1m', '1h', '1d'], tier), pattern;

-- lock_tenant_retention_overrides --
-- Serialises changes to one tenant's overrides, so its count limit holds.
SELECT pg_advisory_xact_lock(hashtextextended('vigil.retention_override:' || %(tenant_id)s, 0));

-- count_retention_overrides --
-- How many overrides a tenant has, the one being replaced excluded.
SELECT count(*)
FROM vigil.retention_override
WHERE tenant_id = %(tenant_id)s AND (tier, pattern) <> (%(tier)s, %(pattern)s);

-- upsert_retention_override --
-- Sets a tenant's retention for a tier's metrics matching a glob.
INSERT INTO vigil.retention_override (tenant_id, tier, pattern, retention)
VALUES (%(tenant_id)s, %(tier)s, %(pattern)s, %(retention)s)
ON CONFLICT (tenant_id, tier, pattern)
DO UPDATE SET retention = excluded.retention, updated_at = now()
RETURNING tier, pattern, retention, updated_at;

-- delete_retention_override --
-- Removes one of a tenant's overrides; returns nothing when there was none.
DELETE FROM vigil.retention_override
WHERE tenant_id = %(tenant_id)s AND tier = %(tier)s AND pattern = %(pattern)s
RETURNING tier;

-- lock_retention --
-- Serialises retention runs, one transaction per tier.
SELECT pg_advisory_xact_lock(5642364879187969);

-- longest_out_of_order_window --
-- The longest out-of-order window of any tenant (zero without tenants).
SELECT coalesce(max(out_of_order_window), interval '0') FROM vigil.tenant;

-- longest_retention_override --
-- The longest override of a tier across tenants (NULL without any).
SELECT max(retention) FROM vigil.retention_override WHERE tier = %(tier)s;

-- doomed_chunks --
-- The chunks drop_chunks(relation, older_than => cutoff) would drop, with their ends.
SELECT c.chunk_schema, c.chunk_name, c.range_end
FROM show_chunks(%(relation)s::regclass, older_than => %(cutoff)s) AS doomed
JOIN timescaledb_information.chunks AS c
  ON format('%%I.%%I', c.chunk_schema, c.chunk_name)::regclass = doomed
ORDER BY c.range_end;

-- lock_chunks --
-- Holds off writes to the chunks about to be dropped; reads go on.
LOCK TABLE {chunks} IN EXCLUSIVE MODE;

-- drop_chunks --
-- Drops a hypertable's chunks whose whole range is older than the cutoff; their names.
SELECT drop_chunks(%(relation)s::regclass, older_than => %(cutoff)s)::text;

-- retained_series --
-- Per series under an override of the tier longer than its global window: the longest
-- such override (ties by pattern) and the time from which it keeps the series' data.
SELECT DISTINCT ON (s.id)
       s.id AS series_id, o.tenant_id, o.pattern, o.retention,
       %(now)s - o.retention AS keep_from
FROM vigil.retention_override AS o
JOIN vigil.series AS s ON s.tenant_id = o.tenant_id AND s.metric LIKE o.metric_like
WHERE o.tier = %(tier)s AND o.retention > %(window)s
ORDER BY s.id, o.retention DESC, o.pattern;

-- retain_samples --
-- Copies the kept raw samples older than `boundary` (the end of the newest chunk about
-- to be dropped) into the twin; rows copied per tenant and pattern.
WITH kept AS ({kept}),
moved AS (
    INSERT INTO {twin}
    SELECT h.*
    FROM {hot} AS h
    JOIN kept AS k ON k.series_id = h.series_id
    WHERE h.{time} < %(boundary)s AND h.{time} >= k.keep_from
    RETURNING series_id
)
SELECT k.tenant_id, k.pattern, k.retention, count(*)
FROM moved AS m
JOIN kept AS k ON k.series_id = m.series_id
GROUP BY k.tenant_id, k.pattern, k.retention
ORDER BY k.tenant_id, k.pattern;

-- retain_rollups --
-- As retain_samples for a rollup tier. A bucket already in the twin is replaced: it can
-- only come back to the hot tier by being re-materialised, which makes the hot row newer.
WITH kept AS ({kept}),
moved AS (
    INSERT INTO {twin}
    SELECT h.*
    FROM {hot} AS h
    JOIN kept AS k ON k.series_id = h.series_id
    WHERE h.{time} < %(boundary)s AND h.{time} >= k.keep_from
    ON CONFLICT (series_id, bucket) DO UPDATE
    SET (samples, sum, min, max, first_time, first_value, last_time, last_value,
         reset_correction, increase)
      = (excluded.samples, excluded.sum, excluded.min, excluded.max, excluded.first_time,
         excluded.first_value, excluded.last_time, excluded.last_value,
         excluded.reset_correction, excluded.increase)
    RETURNING series_id
)
SELECT k.tenant_id, k.pattern, k.retention, count(*)
FROM moved AS m
JOIN kept AS k ON k.series_id = m.series_id
GROUP BY k.tenant_id, k.pattern, k.retention
ORDER BY k.tenant_id, k.pattern;

-- expire_retained --
-- Deletes the twin's rows older than the tier's global cutoff that no override keeps
-- any more: expired under their override, or the override was removed or shortened.
-- One pass over the cold twin's rows behind the cutoff, a hashed anti-join.
DELETE FROM {twin} AS r
WHERE r.{time} < %(cutoff)s
  AND NOT EXISTS (
      SELECT FROM ({kept}) AS k
      WHERE k.series_id = r.series_id AND r.{time} >= k.keep_from
  );
