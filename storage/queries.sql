-- Named queries of the storage layer. Each block starts with `-- name --` and a
-- one-line description; storage/queries.py loads them once.

-- insert_tenant --
-- Creates a tenant; returns nothing when the name is taken.
INSERT INTO vigil.tenant (name, out_of_order_window)
VALUES (%(name)s, %(out_of_order_window)s)
ON CONFLICT (name) DO NOTHING
RETURNING id, name, out_of_order_window, created_at;

-- select_tenants --
-- All tenants with their count of active API keys, by name.
SELECT t.id, t.name, t.out_of_order_window, t.created_at,
       count(k.prefix) FILTER (WHERE k.revoked_at IS NULL) AS active_keys
FROM vigil.tenant AS t
LEFT JOIN vigil.api_key AS k ON k.tenant_id = t.id
GROUP BY t.id
ORDER BY t.name;

-- select_tenant_by_name --
-- One tenant by name.
SELECT id, name, out_of_order_window, created_at
FROM vigil.tenant
WHERE name = %(name)s;

-- insert_api_key --
-- Stores a new key's prefix and hash for a tenant.
INSERT INTO vigil.api_key (prefix, tenant_id, key_hash)
VALUES (%(prefix)s, %(tenant_id)s, %(key_hash)s);

-- revoke_api_key --
-- Marks a key revoked; returns the tenant it belonged to, or nothing if unknown.
UPDATE vigil.api_key
SET revoked_at = coalesce(revoked_at, now())
WHERE prefix = %(prefix)s
RETURNING tenant_id;

-- select_api_key --
-- The tenant and hash of an active key, by its public prefix.
SELECT k.key_hash, t.id, t.name, t.out_of_order_window, t.created_at
FROM vigil.api_key AS k
JOIN vigil.tenant AS t ON t.id = k.tenant_id
WHERE k.prefix = %(prefix)s AND k.revoked_at IS NULL;

-- insert_series --
-- Registers series new to the catalog; rows another writer registered first are skipped.
-- %(rows)s is one JSON array of [metric, labels, fingerprint hex, first µs, last µs]:
-- one parameter instead of five arrays, because psycopg dumps array elements one by
-- one in Python (about 5 µs each), which dominated registering a burst of new series.
INSERT INTO vigil.series (tenant_id, metric, labels, fingerprint, first_seen, last_seen)
SELECT %(tenant_id)s, r ->> 0, r -> 1, decode(r ->> 2, 'hex'),
       timestamptz 'epoch' + (r ->> 3)::bigint * interval '1 microsecond',
       timestamptz 'epoch' + (r ->> 4)::bigint * interval '1 microsecond'
FROM jsonb_array_elements(%(rows)s::jsonb) AS r
ORDER BY r ->> 2
ON CONFLICT (tenant_id, fingerprint) DO NOTHING;

-- select_series_by_fingerprint --
-- Ids and last-seen times of a tenant's series, by fingerprint; %(fingerprints)s is
-- the 16-byte fingerprints concatenated into one bytea (see insert_series for why).
-- Rejected: `fingerprint = ANY(ARRAY(SELECT ...))`, which PostgreSQL evaluates as a
-- filter over the tenant's whole index range (quadratic: 5.9 s for 30k series); the
-- join probes the unique (tenant_id, fingerprint) index once per fingerprint.
SELECT s.fingerprint, s.id, s.last_seen
FROM generate_series(0, length(%(fingerprints)s::bytea) / 16 - 1) AS i
JOIN vigil.series AS s
  ON s.tenant_id = %(tenant_id)s
 AND s.fingerprint = substring(%(fingerprints)s::bytea FROM i * 16 + 1 FOR 16);

-- touch_series --
-- Moves series' last_seen forward (never back), in id order so writers cannot deadlock.
-- %(rows)s is one JSON array of [id, last-seen µs] (see insert_series for why).
UPDATE vigil.series AS s
SET last_seen = t.last_seen
FROM (
    SELECT (r ->> 0)::bigint AS id,
           timestamptz 'epoch' + (r ->> 1)::bigint * interval '1 microsecond' AS last_seen
    FROM jsonb_array_elements(%(rows)s::jsonb) AS r
    ORDER BY 1
) AS t
WHERE s.id = t.id AND s.last_seen < t.last_seen;

-- claim_batches --
-- Records many batches in the write ledger at once; returns only the ones not written before.
INSERT INTO vigil.write_ledger (batch_time, tenant_id, batch_key, samples)
SELECT *
FROM unnest(
    %(batch_times)s::timestamptz[], %(tenant_ids)s::uuid[], %(batch_keys)s::text[],
    %(samples)s::integer[]
)
ON CONFLICT DO NOTHING
RETURNING tenant_id, batch_key;

-- copy_samples --
-- Streams samples in PostgreSQL's binary COPY format (storage/copy_binary.py).
COPY vigil.samples_raw (time, series_id, value) FROM STDIN (FORMAT BINARY);

-- copy_samples_out --
-- Streams one range of samples for a set of series, ordered, in binary COPY format.
COPY (
    SELECT time, series_id, value
    FROM vigil.samples
    WHERE series_id = ANY(%(series_ids)s::bigint[])
      AND time >= %(start)s AND time < %(end)s
    ORDER BY series_id, time
) TO STDOUT (FORMAT BINARY);

-- select_sql_tenant_key --
-- The key that signs tenant claims of the SQL console (owner only).
SELECT key FROM vigil.sql_tenant_key;

-- begin_sql_console --
-- The tenant claim and limits of one `/v1/sql` transaction (storage/sql_console.py).
SELECT set_config('vigil.sql_tenant', %(claim)s, true),
       set_config('statement_timeout', %(timeout_ms)s, true),
       set_config('cursor_tuple_fraction', '1', true);
