-- Read-only SQL for tenants (`POST /v1/sql`): who may read what, enforced by the
-- database rather than by rewriting the tenant's statement.
--
--   vigil_sql_reader  LOGIN. The API's SQL console connects as this role (its own
--                     pool), so no statement can `SET ROLE`/`RESET ROLE` back to the
--                     owner. It may only SELECT the `query` views (repeatable/
--                     query_views.sql): no table, sequence or chunk in `vigil`.
--   vigil_sql_views   NOLOGIN. Owns the `query` views. PostgreSQL checks the tables
--                     under a view as the view's owner, so this role is the one that
--                     reads vigil.series and vigil.samples_raw, and row-level security
--                     applies to it (it is neither owner nor superuser nor BYPASSRLS).
--                     The reader is not a member of it and cannot become it.
--
-- The tenant comes from the setting `vigil.sql_tenant`, which the console sets per
-- transaction to `<tenant uuid>:<hex sha256(key || uuid)>`, the key being a random
-- secret in vigil.sql_tenant_key that only the owner can read. Any role may set a
-- custom setting (set_config is granted to PUBLIC, and revoking it needs the
-- bootstrap superuser), so a bare tenant id would be forgeable by a statement that
-- got past the guard; a claim without the right digest names no tenant and shows no
-- rows. The rejected alternative, `REVOKE EXECUTE ON FUNCTION set_config FROM PUBLIC`,
-- cannot be done on managed servers and leaves every other way of writing a setting.
--
-- The owner (`vigil`: writer, PromQL engine, rollups) owns the tables, so row-level
-- security does not apply to it (no FORCE). Measured for this change (PG 15,
-- TimescaleDB 2.19, 2 cores, 4.2M samples of 11 tenants; medians of 7 EXPLAIN ANALYZE):
--   all of a 300k-sample tenant by metric    owner  98 ms   reader 100-133 ms
--   count a 300k-sample tenant's samples     owner  70 ms   reader  54 ms
--   one series, one hour                     owner .06 ms   reader .20 ms
--   one series, one hour, 20k-series tenant  owner .01 ms   reader 5.5 ms
--   binary COPY of 1M samples by the owner: 1.07-1.15 s with RLS enabled against
--   1.08-1.18 s without (noise: COPY checks RLS once per statement, not per row).
-- The samples policy compares series_id with an array built once per statement (an
-- InitPlan), which the (series_id, time) index can use. Rejected: `series_id IN
-- (SELECT ...)`, a hashed SubPlan evaluated as a filter: a tenant's statement without
-- a series join then seq-scanned every tenant's samples (4.2x the owner's time with 10
-- tenants, growing with their number). The array costs ~0.25 µs per series of the
-- tenant per statement.
--
-- TimescaleDB applies a hypertable's policies when chunks are read through the
-- hypertable, but chunks do not inherit `relrowsecurity`: no role under these
-- policies may ever be granted SELECT on `_timescaledb_internal` chunks directly.

DO $$
BEGIN
    CREATE ROLE vigil_sql_reader LOGIN NOINHERIT CONNECTION LIMIT 64;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- roles are cluster-wide: another database of this cluster created it
END $$;

DO $$
BEGIN
    CREATE ROLE vigil_sql_views NOLOGIN NOINHERIT;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END $$;

DO $$
BEGIN
    IF EXISTS (
        SELECT FROM pg_roles
        WHERE rolname IN ('vigil_sql_reader', 'vigil_sql_views')
          AND (rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb OR rolreplication)
    ) OR EXISTS (
        SELECT FROM pg_auth_members AS m JOIN pg_roles AS r ON r.oid = m.member
        WHERE r.rolname = 'vigil_sql_reader'
    ) THEN
        RAISE EXCEPTION 'roles vigil_sql_reader/vigil_sql_views exist with more rights than '
            'Vigil gives them (superuser, bypassrls, createrole, createdb, replication or a '
            'role membership): drop them or strip those rights, then migrate again';
    END IF;
END $$;

-- Per-role defaults are backstops: the console sets its own limits per transaction.
ALTER ROLE vigil_sql_reader SET search_path = query;
ALTER ROLE vigil_sql_reader SET default_transaction_read_only = on;
ALTER ROLE vigil_sql_reader SET statement_timeout = '60s';
ALTER ROLE vigil_sql_reader SET idle_in_transaction_session_timeout = '60s';

-- Only a superuser may do these; elsewhere the guard is the only wall for them.
DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        -- Every tenant's statements run as the same role, and a role sees its own
        -- sessions' query text in pg_stat_activity and may cancel them.
        ALTER ROLE vigil_sql_reader SET track_activities = off;
        ALTER ROLE vigil_sql_reader SET temp_file_limit = '1GB';
        REVOKE EXECUTE ON FUNCTION pg_catalog.pg_cancel_backend(integer),
            pg_catalog.pg_terminate_backend(integer, bigint) FROM PUBLIC;
        -- PostgreSQL 15 lets any role create and write large objects even inside a
        -- READ ONLY transaction (measured: lo_create committed). Vigil uses none.
        REVOKE EXECUTE ON FUNCTION pg_catalog.lo_creat(integer), pg_catalog.lo_create(oid),
            pg_catalog.lo_from_bytea(oid, bytea), pg_catalog.lo_put(oid, bigint, bytea),
            pg_catalog.lo_open(oid, integer), pg_catalog.lo_unlink(oid) FROM PUBLIC;
    ELSE
        RAISE WARNING 'not a superuser: vigil_sql_reader sessions can see and cancel each '
            'other''s statements and create large objects at the database level (the SQL '
            'guard still refuses all of it)';
    END IF;
END $$;

CREATE SCHEMA query;
GRANT USAGE ON SCHEMA query TO vigil_sql_reader;

GRANT USAGE ON SCHEMA vigil TO vigil_sql_views;
GRANT SELECT ON vigil.series, vigil.samples_raw TO vigil_sql_views;

CREATE TABLE vigil.sql_tenant_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key       bytea NOT NULL CHECK (length(key) = 32)
);

-- gen_random_uuid() draws from the server's strong random source: 244 random bits.
INSERT INTO vigil.sql_tenant_key (key)
VALUES (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')));

-- The tenant a transaction's `vigil.sql_tenant` claim proves, or NULL (no rows).
-- A function of the policies' contract, so it lives here rather than in repeatable/.
CREATE FUNCTION vigil.sql_tenant() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    claim  text := current_setting('vigil.sql_tenant', true);
    tenant uuid;
BEGIN
    IF claim IS NULL OR claim !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{64}$' THEN
        RETURN NULL;
    END IF;
    tenant := split_part(claim, ':', 1)::uuid;
    IF encode(sha256((SELECT key FROM vigil.sql_tenant_key)
                     || convert_to(tenant::text, 'UTF8')), 'hex') = split_part(claim, ':', 2) THEN
        RETURN tenant;
    END IF;
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION vigil.sql_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vigil.sql_tenant() TO vigil_sql_reader;

ALTER TABLE vigil.series ENABLE ROW LEVEL SECURITY;
ALTER TABLE vigil.samples_raw ENABLE ROW LEVEL SECURITY;

-- `(SELECT vigil.sql_tenant())` is an InitPlan: the claim is checked once per statement.
CREATE POLICY sql_tenant ON vigil.series
    FOR SELECT TO vigil_sql_views
    USING (tenant_id = (SELECT vigil.sql_tenant()));

CREATE POLICY sql_tenant ON vigil.samples_raw
    FOR SELECT TO vigil_sql_views
    USING (series_id = ANY (ARRAY(
        SELECT id FROM vigil.series WHERE tenant_id = (SELECT vigil.sql_tenant())
    )));
