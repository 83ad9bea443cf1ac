-- Raw samples: a narrow hypertable with the one index per-series time-range reads
-- need. Measured for issue #2 (PG 15, TimescaleDB 2.19, this machine): the default
-- `time` index cost ~30 % of write throughput, a unique (series_id, time) key with
-- ON CONFLICT ~45 %, so neither exists; duplicates are prevented by the write
-- ledger below instead. Readers use the `vigil.samples` view, never this table, so
-- the physical layout can change without touching them. The chunk interval here is
-- a default; `vigil migrate` applies the configured one.
CREATE TABLE vigil.samples_raw (
    time      timestamptz NOT NULL,
    series_id bigint NOT NULL,
    value     double precision NOT NULL
);

SELECT create_hypertable(
    'vigil.samples_raw',
    by_range('time', interval '2 hours'),
    create_default_indexes => false
);

CREATE INDEX samples_raw_series_time ON vigil.samples_raw (series_id, time);

-- One row per batch ever written, committed in the same transaction as the batch's
-- samples: a (key, earliest sample time) pair the tenant wrote before means the batch
-- is already stored. Keys are per tenant, so one tenant can never claim (and so
-- suppress) another's batch. The earliest sample time is the same on every replay of
-- an unchanged batch and partitions the ledger, so old ledger chunks are dropped
-- whole alongside old samples; a key re-sent with different contents is not caught.
CREATE TABLE vigil.write_ledger (
    batch_time timestamptz NOT NULL,
    tenant_id  uuid NOT NULL,
    batch_key  text NOT NULL,
    samples    integer NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, batch_key, batch_time)
);

SELECT create_hypertable(
    'vigil.write_ledger',
    by_range('batch_time', interval '1 day'),
    create_default_indexes => false
);
