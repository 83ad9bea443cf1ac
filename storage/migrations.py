"""Schema migrations: numbered, append-only files in sql/, then the re-runnable ones."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg

from storage.errors import MigrationError, TimescaleDBUnavailable, first_line

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MINIMUM_TIMESCALEDB = (2, 13)

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises concurrent `vigil migrate` runs against one database.
_LOCK_ID = 0x5649_4749_4C00

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS vigil;
CREATE TABLE IF NOT EXISTS vigil.schema_migration (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class TimescaleDB:
    """The TimescaleDB a database offers."""

    version: str
    license: str


@dataclass(frozen=True)
class MigrationReport:
    """What one `migrate` run found and did."""

    applied: list[Migration]
    timescaledb: TimescaleDB


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """The numbered migrations in sql_dir, in order; a gap or a duplicate number is an error."""
    migrations = []
    for path in sorted(sql_dir.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql")
        migrations.append(Migration(int(match[1]), match[2], path.read_text()))
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration {expected:04d} is missing before {migration.name}")
    return migrations


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def check_timescaledb(conn: psycopg.Connection) -> TimescaleDB:
    """The TimescaleDB this server offers, or TimescaleDBUnavailable saying how to fix it."""
    row = conn.execute(
        """
        SELECT coalesce(e.extversion, a.default_version),
               current_setting('shared_preload_libraries')
        FROM pg_available_extensions AS a
        LEFT JOIN pg_extension AS e ON e.extname = a.name
        WHERE a.name = 'timescaledb'
        """
    ).fetchone()
    server = conn.info.parameter_status("server_version") or "?"
    if row is None:
        raise TimescaleDBUnavailable(
            f"TimescaleDB is not installed for this PostgreSQL {server} server: run ops/install "
            "(or install TimescaleDB >= 2.13 there)"
        )
    version, preload = row
    if "timescaledb" not in preload:
        raise TimescaleDBUnavailable(
            "TimescaleDB is installed but not preloaded: add shared_preload_libraries = "
            "'timescaledb' to postgresql.conf and restart PostgreSQL"
        )
    if _version_tuple(version) < MINIMUM_TIMESCALEDB:
        raise TimescaleDBUnavailable(
            f"TimescaleDB {version} is too old: Vigil needs "
            f"{'.'.join(map(str, MINIMUM_TIMESCALEDB))} or newer"
        )
    license_row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    return TimescaleDB(version=version, license=(license_row and license_row[0]) or "apache")


def migrate(
    conn: psycopg.Connection,
    *,
    samples_chunk_interval: timedelta,
    sql_dir: Path = SQL_DIR,
) -> MigrationReport:
    """Apply pending migrations (one transaction each), then the re-runnable SQL files.

    `conn` is in autocommit mode, as every storage-layer connection is.
    """
    migrations = discover(sql_dir)
    check_timescaledb(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
    try:
        with conn.transaction():
            conn.execute(_BOOTSTRAP)
        applied = _apply_pending(conn, migrations)
        with conn.transaction():
            for path in sorted((sql_dir / "repeatable").glob("*.sql")):
                conn.execute(path.read_text())
            installed = TimescaleDB(*_installed_timescaledb(conn))
            conn.execute(
                """
                INSERT INTO vigil.timescaledb_info (version, license) VALUES (%s, %s)
                ON CONFLICT (singleton) DO UPDATE
                SET version = excluded.version, license = excluded.license, checked_at = now()
                """,
                (installed.version, installed.license),
            )
            conn.execute(
                "SELECT set_chunk_time_interval('vigil.samples_raw', %s::interval)",
                (samples_chunk_interval,),
            )
    finally:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return MigrationReport(applied=applied, timescaledb=installed)


def _installed_timescaledb(conn: psycopg.Connection) -> tuple[str, str]:
    row = conn.execute(
        """
        SELECT extversion, coalesce(current_setting('timescaledb.license', true), 'apache')
        FROM pg_extension WHERE extname = 'timescaledb'
        """
    ).fetchone()
    assert row is not None, "migration 0001 creates the extension"
    return row[0], row[1]


def _apply_pending(conn: psycopg.Connection, migrations: list[Migration]) -> list[Migration]:
    recorded = {
        version: (name, checksum)
        for version, name, checksum in conn.execute(
            "SELECT version, name, checksum FROM vigil.schema_migration"
        )
    }
    unknown = sorted(set(recorded) - {m.version for m in migrations})
    if unknown:
        raise MigrationError(
            f"the database has migration {unknown[0]:04d} that this checkout lacks: "
            "update the checkout"
        )
    applied = []
    for migration in migrations:
        if migration.version in recorded:
            name, checksum = recorded[migration.version]
            if checksum != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{name} changed after it was applied; "
                    "landed migrations are append-only: add a new one instead"
                )
            continue
        try:
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO vigil.schema_migration (version, name, checksum) "
                    "VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
        except psycopg.Error as exc:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} failed: {first_line(exc)}"
            ) from exc
        applied.append(migration)
    return applied
