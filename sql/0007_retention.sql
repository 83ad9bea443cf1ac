-- Per-tenant retention overrides and the cold "retained" twins that enforce them
-- (storage/retention.py; README, "Retention").
--
-- Retention drops whole chunks of the hot tables (samples_raw, rollup_1m/1h/1d), and
-- a chunk holds every tenant's rows. So an override that keeps a tenant's metrics
-- LONGER than its tier's global window is enforced by copying those metrics' rows out
-- of the chunks about to be dropped into the tier's twin, in the same transaction as
-- the drop; the twin expires per override by row DELETE (it is cold and small) and by
-- dropping its chunks beyond the longest override of its tier. The readers' views
-- (vigil.samples, vigil.rollups_*) UNION ALL the twin. An override SHORTER than the
-- global window cannot be enforced without row deletes on the hot tables and is
-- refused when set.

-- One row per tenant, tier and metric-name glob (`*` any run, `?` one character; the
-- other characters are those of Prometheus metric names). A series matching several
-- of its tenant's patterns in a tier keeps its data for the longest of them.
-- `metric_like` is the glob as a LIKE pattern (`_` escaped first, then `*` -> `%`,
-- `?` -> `_`), so matching the catalog is `metric LIKE metric_like`.
CREATE TABLE vigil.retention_override (
    tenant_id   uuid NOT NULL REFERENCES vigil.tenant (id) ON DELETE CASCADE,
    tier        text NOT NULL CHECK (tier IN ('raw', '1m', '1h', '1d')),
    pattern     text NOT NULL CHECK (pattern ~ '^[a-zA-Z_:*?][a-zA-Z0-9_:*?]{0,199}$'),
    retention   interval NOT NULL CHECK (retention > interval '0'),
    metric_like text NOT NULL GENERATED ALWAYS AS (
                    replace(replace(replace(pattern, '_', '\_'), '*', '%'), '?', '_')
                ) STORED,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, tier, pattern)
);

-- The twins: same columns and key as the hot tier, wider chunks (they hold only the
-- overridden metrics, for longer).
CREATE TABLE vigil.samples_retained (LIKE vigil.samples_raw);

SELECT create_hypertable(
    'vigil.samples_retained',
    by_range('time', interval '7 days'),
    create_default_indexes => false
);

CREATE INDEX samples_retained_series_time ON vigil.samples_retained (series_id, time);

CREATE TABLE vigil.rollup_1m_retained (LIKE vigil.rollup_1m INCLUDING ALL);
CREATE TABLE vigil.rollup_1h_retained (LIKE vigil.rollup_1h INCLUDING ALL);
CREATE TABLE vigil.rollup_1d_retained (LIKE vigil.rollup_1d INCLUDING ALL);

SELECT create_hypertable('vigil.rollup_1m_retained', by_range('bucket', interval '30 days'),
                         create_default_indexes => false);
SELECT create_hypertable('vigil.rollup_1h_retained', by_range('bucket', interval '90 days'),
                         create_default_indexes => false);
SELECT create_hypertable('vigil.rollup_1d_retained', by_range('bucket', interval '365 days'),
                         create_default_indexes => false);
