-- Rollup tiers: 1m from raw samples, 1h from 1m, 1d from 1h (storage/rollups.py).
--
-- A bucket is named by its END and holds the samples with end - width < time <= end:
-- left-open like a PromQL window (t - range, t], so a window whose edges fall on
-- bucket ends is exactly a union of buckets, and the latest sample at or before a
-- bucket end is that bucket's `last_value`.
--
-- Per series and bucket (stale markers excluded, NaN kept as Prometheus keeps it):
--   samples               number of samples (count_over_time)
--   sum                   sum of values (sum_over_time; avg = sum / samples)
--   min, max              NaN-skipping, NaN only when every value is NaN (min/max_over_time)
--   first_*, last_*       earliest and latest sample with its time (last_over_time,
--                         instant selectors, counter continuity across buckets)
--   reset_correction      Prometheus's counter-reset correction: the sum of the previous
--                         value over every consecutive pair whose value dropped
--   increase              last - first + reset_correction: the counter increase between
--                         the bucket's first and last sample, resets handled
-- The primary key (series_id, bucket) is the one index: reads are per series over a
-- bucket range, and re-materialising a bucket is an upsert on it.

CREATE TABLE vigil.rollup_1m (
    bucket           timestamptz NOT NULL,
    series_id        bigint NOT NULL,
    samples          integer NOT NULL,
    sum              double precision NOT NULL,
    min              double precision NOT NULL,
    max              double precision NOT NULL,
    first_time       timestamptz NOT NULL,
    first_value      double precision NOT NULL,
    last_time        timestamptz NOT NULL,
    last_value       double precision NOT NULL,
    reset_correction double precision NOT NULL,
    increase         double precision NOT NULL,
    PRIMARY KEY (series_id, bucket)
);

CREATE TABLE vigil.rollup_1h (LIKE vigil.rollup_1m INCLUDING ALL);
CREATE TABLE vigil.rollup_1d (LIKE vigil.rollup_1m INCLUDING ALL);

-- Chunk widths keep every tier at 14-30 chunks over its default retention, so
-- retention drops whole chunks at a fine enough grain.
SELECT create_hypertable('vigil.rollup_1m', by_range('bucket', interval '1 day'),
                         create_default_indexes => false);
SELECT create_hypertable('vigil.rollup_1h', by_range('bucket', interval '7 days'),
                         create_default_indexes => false);
SELECT create_hypertable('vigil.rollup_1d', by_range('bucket', interval '30 days'),
                         create_default_indexes => false);

-- How far each tier is built. Every bucket ending at or before `materialised_to` is
-- in the tier. A run first raises `claimed_to` (the writer marks any sample at or
-- before it as late, under a shared advisory lock the raise waits for), then
-- materialises up to it and moves `materialised_to` along; a run that dies in
-- between leaves the claimed range to be materialised again by the next. NULL: no
-- run yet (the first starts at the oldest data of the tier's source).
CREATE TABLE vigil.rollup_watermark (
    tier            text PRIMARY KEY CHECK (tier IN ('1m', '1h', '1d')),
    claimed_to      timestamptz,
    materialised_to timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (materialised_to <= claimed_to)
);

INSERT INTO vigil.rollup_watermark (tier) VALUES ('1m'), ('1h'), ('1d');

-- The invalidation log: 1m buckets (by end) holding samples written at or behind the
-- 1m tier's claimed watermark, per tenant and metric. The writer inserts into it in
-- the same transaction as the samples; the repair job claims rows, recomputes those
-- buckets in every tier built past them, and deletes the rows in one transaction.
CREATE TABLE vigil.rollup_dirty (
    tenant_id uuid NOT NULL,
    metric    text NOT NULL,
    bucket    timestamptz NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, metric, bucket)
);

-- The writer's side of the watermark protocol in one round trip: hold the shared lock
-- a watermark raise takes exclusively, until the writing transaction ends, and say
-- up to which time a sample is late (NULL: no sample is).
CREATE FUNCTION vigil.late_sample_horizon() RETURNS timestamptz
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(5642364879187968);
    RETURN (SELECT claimed_to FROM vigil.rollup_watermark WHERE tier = '1m');
END;
$$;
