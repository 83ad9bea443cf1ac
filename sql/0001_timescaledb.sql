-- TimescaleDB and Vigil's private schema. Users never read `vigil` directly: the
-- read-only SQL endpoint gets its own views later.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE SCHEMA IF NOT EXISTS vigil;

-- What `vigil migrate` found last time it ran: the TimescaleDB version and license
-- decide which features (compression, continuous aggregates) Vigil may rely on.
CREATE TABLE vigil.timescaledb_info (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    text NOT NULL,
    license    text NOT NULL CHECK (license IN ('apache', 'timescale')),
    checked_at timestamptz NOT NULL DEFAULT now()
);
