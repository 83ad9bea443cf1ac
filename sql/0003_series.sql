-- The series catalog: one row per (tenant, metric, label set). `fingerprint` is a
-- 128-bit BLAKE2b of the metric and its sorted labels, computed by the writer, so
-- resolving a series never needs a jsonb comparison. `first_seen`/`last_seen` are
-- sample (observation) times; `last_seen` is kept to within the writer's
-- resolution (storage/series.py) so steady writes do not update catalog rows.
CREATE TABLE vigil.series (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES vigil.tenant (id) ON DELETE CASCADE,
    metric      text NOT NULL,
    labels      jsonb NOT NULL,
    fingerprint bytea NOT NULL CHECK (length(fingerprint) = 16),
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    UNIQUE (tenant_id, fingerprint)
);

CREATE INDEX series_tenant_metric ON vigil.series (tenant_id, metric);
