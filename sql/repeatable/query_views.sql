-- What tenants read through `POST /v1/sql` (README, "SQL"): the `query` schema, its
-- views and the few functions it adds. Owned by vigil_sql_views so that row-level
-- security on the tables below filters every row to the caller's tenant
-- (sql/0005_sql_reader.sql). Re-created on every `vigil migrate`; the rollup views
-- join them here.

-- The caller's series: one row per metric and label set (labels without __name__).
CREATE OR REPLACE VIEW query.series AS
SELECT id, metric, labels, first_seen, last_seen
FROM vigil.series;

ALTER VIEW query.series OWNER TO vigil_sql_views;
GRANT SELECT ON query.series TO vigil_sql_reader;

-- The caller's raw samples. Reads vigil.samples_raw, not the vigil.samples view:
-- relations under a view are checked as that view's owner, and vigil.samples belongs
-- to the owner, to whom row-level security does not apply.
CREATE OR REPLACE VIEW query.samples AS
SELECT time, series_id, value
FROM vigil.samples_raw;

ALTER VIEW query.samples OWNER TO vigil_sql_views;
GRANT SELECT ON query.samples TO vigil_sql_reader;

-- TimescaleDB's time_bucket under the views schema, so statements need not name
-- TimescaleDB's schema (a SQL-standard body is bound when created, and inlined).
--
-- The reader gets USAGE on TimescaleDB's schema (here `vigil`) all the same: the
-- planner resolves TimescaleDB's own functions there by name as the current user
-- (first/last detection for any two-argument aggregate over a hypertable, e.g.
-- corr(value, x)), which fails with "permission denied for schema vigil" without it.
-- USAGE gives no table, view or sequence there; the guard refuses `vigil.*` anyway.
DO $$
DECLARE
    timescaledb name := (
        SELECT n.nspname FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
        WHERE e.extname = 'timescaledb'
    );
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO vigil_sql_reader', timescaledb);
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION query.time_bucket(bucket_width interval, ts timestamptz) '
        'RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE '
        'RETURN %I.time_bucket(bucket_width, ts)', timescaledb);
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION query.time_bucket(bucket_width interval, ts timestamptz, '
        'origin timestamptz) RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE '
        'RETURN %I.time_bucket(bucket_width, ts, origin)', timescaledb);
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION query.time_bucket(bucket_width interval, ts timestamptz, '
        'timezone text) RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE '
        'RETURN %I.time_bucket(bucket_width, ts, timezone)', timescaledb);
END $$;

GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA query TO vigil_sql_reader;
