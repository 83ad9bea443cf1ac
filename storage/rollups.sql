-- Named queries of the rollup engine (storage/rollups.py). `{target}`, `{source}` and
-- `{rows}` are filled in with psycopg.sql identifiers and row sources; buckets are
-- named by their end and hold (end - width, end].

-- upsert_buckets --
-- Writes the bucket rows `{aggregate}` computes; a bucket built again is replaced.
INSERT INTO {target} AS r (bucket, series_id, samples, sum, min, max, first_time,
                           first_value, last_time, last_value, reset_correction, increase)
{aggregate}
ON CONFLICT (series_id, bucket) DO UPDATE SET
    samples = excluded.samples, sum = excluded.sum, min = excluded.min, max = excluded.max,
    first_time = excluded.first_time, first_value = excluded.first_value,
    last_time = excluded.last_time, last_value = excluded.last_value,
    reset_correction = excluded.reset_correction, increase = excluded.increase;

-- rollup_from_raw --
-- The buckets of `{rows}` (bucket, series_id, time, value), one row per series
-- and bucket, with Prometheus's NaN and counter-reset semantics (Go comparisons: any
-- comparison with NaN is false, where PostgreSQL would order NaN above everything).
SELECT bucket, series_id, count(*)::integer, sum(value),
       coalesce(min(value) FILTER (WHERE value <> 'NaN'), 'NaN'),
       coalesce(max(value) FILTER (WHERE value <> 'NaN'), 'NaN'),
       min(time), first(value, time), max(time), last(value, time),
       sum(correction),
       last(value, time) - first(value, time) + sum(correction)
FROM (
    SELECT bucket, series_id, time, value,
           CASE WHEN value < previous AND value <> 'NaN' AND previous <> 'NaN'
                THEN previous ELSE 0 END AS correction
    FROM (
        SELECT rows.bucket, rows.series_id, rows.time, rows.value,
               lag(rows.value) OVER (PARTITION BY rows.series_id, rows.bucket
                                     ORDER BY rows.time) AS previous
        FROM ({rows}) AS rows
    ) AS paired
) AS corrected
GROUP BY series_id, bucket;

-- raw_rows_window --
-- Every raw sample (stale markers left out) with end - width < time <= end for bucket
-- ends in (low, high].
SELECT time_bucket(%(width)s, time - interval '1 microsecond') + %(width)s AS bucket,
       series_id, time, value
FROM vigil.samples
WHERE time > %(low)s AND time <= %(high)s
  AND (value <> 'NaN' OR float8send(value) <> '\x7ff0000000000002'::bytea);

-- raw_rows_targets --
-- The raw samples (stale markers left out) of the (tenant, metric, bucket end) targets.
SELECT targets.bucket, s.series_id, s.time, s.value
FROM unnest(%(tenant_ids)s::uuid[], %(metrics)s::text[], %(buckets)s::timestamptz[])
     AS targets (tenant_id, metric, bucket)
JOIN vigil.series AS c ON c.tenant_id = targets.tenant_id AND c.metric = targets.metric
JOIN vigil.samples AS s
  ON s.series_id = c.id AND s.time > targets.bucket - %(width)s AND s.time <= targets.bucket
-- Constant bounds as well, which the index scan and chunk exclusion can use.
WHERE s.time > %(low)s AND s.time <= %(high)s
  AND (s.value <> 'NaN' OR float8send(s.value) <> '\x7ff0000000000002'::bytea);

-- rollup_from_tier --
-- Coarse buckets from the finer buckets of `{rows}` (coarse bucket first, then
-- the finer row's columns). Counter continuity across finer buckets: a drop from one
-- bucket's last value to the next one's first is a reset like any other.
SELECT bucket, series_id, sum(samples)::integer, sum(sum),
       coalesce(min(min) FILTER (WHERE min <> 'NaN'), 'NaN'),
       coalesce(max(max) FILTER (WHERE max <> 'NaN'), 'NaN'),
       min(first_time), first(first_value, first_time),
       max(last_time), last(last_value, last_time),
       sum(reset_correction + boundary),
       last(last_value, last_time) - first(first_value, first_time)
           + sum(reset_correction + boundary)
FROM (
    SELECT bucket, series_id, samples, sum, min, max, first_time, first_value, last_time,
           last_value, reset_correction,
           CASE WHEN first_value < previous AND first_value <> 'NaN' AND previous <> 'NaN'
                THEN previous ELSE 0 END AS boundary
    FROM (
        SELECT rows.*, lag(rows.last_value) OVER (PARTITION BY rows.series_id, rows.bucket
                                                  ORDER BY rows.first_time) AS previous
        FROM ({rows}) AS rows
    ) AS paired
) AS corrected
GROUP BY series_id, bucket;

-- tier_rows_window --
-- Every finer bucket whose coarse bucket ends in (low, high].
SELECT time_bucket(%(width)s, f.bucket - interval '1 microsecond') + %(width)s AS bucket,
       f.series_id, f.samples, f.sum, f.min, f.max, f.first_time, f.first_value,
       f.last_time, f.last_value, f.reset_correction
FROM {source} AS f
WHERE f.bucket > %(low)s AND f.bucket <= %(high)s;

-- tier_rows_targets --
-- The finer buckets of the (tenant, metric, coarse bucket end) targets.
SELECT targets.bucket, f.series_id, f.samples, f.sum, f.min, f.max, f.first_time,
       f.first_value, f.last_time, f.last_value, f.reset_correction
FROM unnest(%(tenant_ids)s::uuid[], %(metrics)s::text[], %(buckets)s::timestamptz[])
     AS targets (tenant_id, metric, bucket)
JOIN vigil.series AS c ON c.tenant_id = targets.tenant_id AND c.metric = targets.metric
JOIN {source} AS f
  ON f.series_id = c.id AND f.bucket > targets.bucket - %(width)s AND f.bucket <= targets.bucket
-- Constant bounds as well, which the index scan and chunk exclusion can use.
WHERE f.bucket > %(low)s AND f.bucket <= %(high)s;

-- select_watermarks --
-- Every tier's watermarks.
SELECT tier, claimed_to, materialised_to FROM vigil.rollup_watermark;

-- lock_watermark --
-- One tier's watermarks, locked for the rest of the transaction.
SELECT claimed_to, materialised_to FROM vigil.rollup_watermark WHERE tier = %(tier)s FOR UPDATE;

-- try_lock_watermark --
-- One tier's watermarks, locked for the rest of the transaction; no row while another
-- transaction holds them.
SELECT claimed_to, materialised_to FROM vigil.rollup_watermark WHERE tier = %(tier)s
FOR UPDATE SKIP LOCKED;

-- claim_watermark --
-- Raises a tier's claimed watermark.
UPDATE vigil.rollup_watermark SET claimed_to = %(claimed_to)s, updated_at = now()
WHERE tier = %(tier)s;

-- complete_watermark --
-- Moves a tier's materialised watermark up to its claim (or to `materialised_to`).
UPDATE vigil.rollup_watermark
SET materialised_to = %(materialised_to)s,
    claimed_to = greatest(claimed_to, %(materialised_to)s),
    updated_at = now()
WHERE tier = %(tier)s;

-- lock_late_marking --
-- Waits for every writing transaction holding vigil.late_sample_horizon()'s shared
-- lock (same key), and keeps new ones out until this transaction ends.
SELECT pg_advisory_xact_lock(5642364879187968);

-- lock_rollup_maintenance --
-- Serialises rollup runs and repairs, which both rewrite tier rows.
SELECT pg_advisory_xact_lock(5642364879187969);

-- oldest_chunk --
-- Where the oldest chunk of a vigil hypertable starts (NULL: no chunks).
SELECT min(range_start) FROM timescaledb_information.chunks
WHERE hypertable_schema = 'vigil' AND hypertable_name = %(table)s;

-- late_sample_horizon --
-- Up to which sample time a write is late, holding the watermark-raise lock until commit.
SELECT vigil.late_sample_horizon();

-- mark_late_buckets --
-- Records the 1m buckets late samples landed in, per tenant and metric. DO UPDATE (not
-- NOTHING) locks an existing row, so a repair claiming it waits for this transaction.
INSERT INTO vigil.rollup_dirty AS d (tenant_id, metric, bucket)
SELECT DISTINCT c.tenant_id, c.metric, late.bucket
FROM unnest(%(series_ids)s::bigint[], %(buckets)s::timestamptz[]) AS late (series_id, bucket)
JOIN vigil.series AS c ON c.id = late.series_id
-- Rows locked in key order, so concurrent writers wait on each other, never deadlock.
ORDER BY 1, 2, 3
ON CONFLICT (tenant_id, metric, bucket) DO UPDATE SET marked_at = excluded.marked_at;

-- remark_dirty --
-- Puts claimed dirty buckets back (their repair could not be finished).
INSERT INTO vigil.rollup_dirty (tenant_id, metric, bucket)
SELECT * FROM unnest(%(tenant_ids)s::uuid[], %(metrics)s::text[], %(buckets)s::timestamptz[])
ON CONFLICT DO NOTHING;

-- claim_dirty --
-- Takes up to `limit` dirty buckets the 1m tier already holds, oldest first.
DELETE FROM vigil.rollup_dirty
WHERE (tenant_id, metric, bucket) IN (
    SELECT tenant_id, metric, bucket FROM vigil.rollup_dirty
    WHERE bucket <= %(materialised_to)s
    ORDER BY bucket
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING tenant_id, metric, bucket;

-- count_dirty --
-- How many dirty (tenant, metric, 1m bucket) rows wait for repair.
SELECT count(*) FROM vigil.rollup_dirty;

-- select_dirty_buckets --
-- The 1m bucket ends in (low, high] awaiting repair for a tenant's metrics (any metric
-- when `any_metric`), so queries read raw samples there instead of stale tier rows.
SELECT DISTINCT bucket FROM vigil.rollup_dirty
WHERE tenant_id = %(tenant_id)s
  AND (%(any_metric)s OR metric = ANY(%(metrics)s))
  AND bucket > %(low)s AND bucket <= %(high)s;
