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

-- insert_buckets --
-- Writes the bucket rows `{aggregate}` computes where none exist (a repair deletes its
-- ranges first): a plain insert, where ON CONFLICT's speculative insertion cost 60 %
-- more per row (3 M 1m rows, 14.7 s against 23.9 s).
INSERT INTO {target} (bucket, series_id, samples, sum, min, max, first_time, first_value,
                      last_time, last_value, reset_correction, increase)
{aggregate};

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

-- raw_rows_ranges --
-- The raw samples (stale markers left out) of the series of each (tenant, metric, low,
-- high) range with low < time <= high, series by series: the targets come in series id
-- order, so the nested loop over the samples' (series_id, time) index keeps that order
-- and rollup_from_raw's window sorts one series at a time (an incremental sort) instead
-- of every row at once. One index range scan per series and range. The rejected simpler
-- join, one target per dirty minute, rescanned the claim's whole span for every minute
-- and series and sorted every row at once: for 1000 dirty minutes of 100k series, 1.1 M
-- index scans read 72 M samples to keep 6.6 M, and the sort spilled 271 MB; repairing 30
-- minutes of 100k series (18 M samples) took 130 s that way, 39 s this way.
SELECT time_bucket(%(width)s, s.time - interval '1 microsecond') + %(width)s AS bucket,
       s.series_id, s.time, s.value
FROM (
    SELECT c.id, ranges.low, ranges.high
    FROM unnest(%(tenant_ids)s::uuid[], %(metrics)s::text[], %(lows)s::timestamptz[],
                %(highs)s::timestamptz[]) AS ranges (tenant_id, metric, low, high)
    JOIN vigil.series AS c ON c.tenant_id = ranges.tenant_id AND c.metric = ranges.metric
    ORDER BY c.id, ranges.low
) AS targets
JOIN vigil.samples AS s
  ON s.series_id = targets.id AND s.time > targets.low AND s.time <= targets.high
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

-- tier_rows_ranges --
-- The finer buckets of the series of each (tenant, metric, low, high) range of coarse
-- buckets, series by series (as raw_rows_ranges, for rollup_from_tier's window).
SELECT time_bucket(%(width)s, f.bucket - interval '1 microsecond') + %(width)s AS bucket,
       f.series_id, f.samples, f.sum, f.min, f.max, f.first_time, f.first_value,
       f.last_time, f.last_value, f.reset_correction
FROM (
    SELECT c.id, ranges.low, ranges.high
    FROM unnest(%(tenant_ids)s::uuid[], %(metrics)s::text[], %(lows)s::timestamptz[],
                %(highs)s::timestamptz[]) AS ranges (tenant_id, metric, low, high)
    JOIN vigil.series AS c ON c.tenant_id = ranges.tenant_id AND c.metric = ranges.metric
    ORDER BY c.id, ranges.low
) AS targets
JOIN {source} AS f
  ON f.series_id = targets.id AND f.bucket > targets.low AND f.bucket <= targets.high
-- Constant bounds as well, which the index scan and chunk exclusion can use.
WHERE f.bucket > %(low)s AND f.bucket <= %(high)s;

-- delete_ranges --
-- Deletes a tier's rows of the series of each (tenant, metric, low, high) range with
-- low < bucket <= high, so insert_buckets can write them again without ON CONFLICT.
DELETE FROM {target} AS r
USING unnest(%(tenant_ids)s::uuid[], %(metrics)s::text[], %(lows)s::timestamptz[],
             %(highs)s::timestamptz[]) AS ranges (tenant_id, metric, low, high),
      vigil.series AS c
WHERE c.tenant_id = ranges.tenant_id AND c.metric = ranges.metric
  AND r.series_id = c.id AND r.bucket > ranges.low AND r.bucket <= ranges.high
  AND r.bucket > %(low)s AND r.bucket <= %(high)s;

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
-- Takes up to `limit` dirty buckets the 1m tier already holds, a (tenant, metric) at a
-- time, the one holding the oldest bucket first, so its buckets are repaired together
-- as ranges (and its 1h and 1d buckets once) rather than spread over every batch; rows
-- a writer holds are skipped, and left to a later repair. Only the rows taken are locked.
WITH oldest AS (
    SELECT tenant_id, metric, min(bucket) AS bucket
    FROM vigil.rollup_dirty
    WHERE bucket <= %(materialised_to)s
    GROUP BY tenant_id, metric
), taken AS (
    SELECT d.tenant_id, d.metric, d.bucket
    FROM vigil.rollup_dirty AS d
    JOIN oldest AS o ON o.tenant_id = d.tenant_id AND o.metric = d.metric
    WHERE d.bucket <= %(materialised_to)s
    ORDER BY o.bucket, d.tenant_id, d.metric, d.bucket
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
DELETE FROM vigil.rollup_dirty AS d
USING taken
WHERE d.tenant_id = taken.tenant_id AND d.metric = taken.metric AND d.bucket = taken.bucket
RETURNING d.tenant_id, d.metric, d.bucket;

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
