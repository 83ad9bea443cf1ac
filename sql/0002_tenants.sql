-- Tenants and their API keys. A key is `vgl_<prefix>_<secret>`; only the public
-- prefix and a SHA-256 of the whole key are stored. Keys are 256-bit random, so a
-- fast hash is enough (a slow password hash would only add latency per request).
CREATE TABLE vigil.tenant (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    out_of_order_window interval NOT NULL DEFAULT interval '2 hours'
                        CHECK (out_of_order_window > interval '0'),
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vigil.api_key (
    prefix     text PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES vigil.tenant (id) ON DELETE CASCADE,
    key_hash   bytea NOT NULL CHECK (length(key_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE INDEX api_key_tenant ON vigil.api_key (tenant_id);
