"""Migrations: idempotent, append-only, TimescaleDB recorded, chunk interval applied."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from storage.database import connect
from storage.errors import MigrationError
from storage.migrations import SQL_DIR, discover, migrate

TWO_HOURS = timedelta(hours=2)


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    """A database of its own, dropped afterwards."""
    name = f"vigil_mig_{uuid.uuid4().hex[:10]}"
    admin = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def schema_of(conn: psycopg.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Everything migrations create, as comparable rows."""
    queries = {
        "columns": """
            SELECT table_name, column_name, data_type, is_nullable, column_default
            FROM information_schema.columns WHERE table_schema = 'vigil'
            ORDER BY 1, 2""",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'vigil' "
        "ORDER BY 1",
        "views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'vigil' ORDER BY 1",
        "hypertables": """
            SELECT hypertable_name, column_name, time_interval
            FROM timescaledb_information.dimensions WHERE hypertable_schema = 'vigil'
            ORDER BY 1""",
        "migrations": "SELECT version, name, checksum FROM vigil.schema_migration ORDER BY 1",
    }
    return {name: conn.execute(query).fetchall() for name, query in queries.items()}


def test_migrating_twice_changes_nothing(empty_database: str) -> None:
    with connect(empty_database) as conn:
        first = migrate(conn, samples_chunk_interval=TWO_HOURS)
        before = schema_of(conn)
        second = migrate(conn, samples_chunk_interval=TWO_HOURS)
        after = schema_of(conn)
    assert [m.version for m in first.applied] == [m.version for m in discover()]
    assert second.applied == []
    assert before == after
    assert ("samples_raw", "time", TWO_HOURS) in before["hypertables"]
    assert [name for name, _ in before["indexes"] if name.startswith("samples_raw")] == [
        "samples_raw_series_time"
    ]


def test_timescaledb_version_and_license_are_recorded(empty_database: str) -> None:
    with connect(empty_database) as conn:
        report = migrate(conn, samples_chunk_interval=TWO_HOURS)
        row = conn.execute("SELECT version, license FROM vigil.timescaledb_info").fetchone()
        installed = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
    assert installed is not None
    assert row == (installed[0], report.timescaledb.license)
    assert report.timescaledb.license in ("apache", "timescale")


def test_configured_chunk_interval_is_applied(empty_database: str) -> None:
    with connect(empty_database) as conn:
        migrate(conn, samples_chunk_interval=TWO_HOURS)
        migrate(conn, samples_chunk_interval=timedelta(minutes=30))
        row = conn.execute(
            "SELECT time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_schema = 'vigil' AND hypertable_name = 'samples_raw'"
        ).fetchone()
    assert row == (timedelta(minutes=30),)


def test_an_edited_migration_is_refused(empty_database: str, tmp_path: Path) -> None:
    shutil.copytree(SQL_DIR, tmp_path / "sql")
    with connect(empty_database) as conn:
        migrate(conn, samples_chunk_interval=TWO_HOURS, sql_dir=tmp_path / "sql")
        edited = tmp_path / "sql" / "0002_tenants.sql"
        edited.write_text(edited.read_text() + "\n-- an afterthought\n")
        with pytest.raises(MigrationError, match="0002_tenants changed after it was applied"):
            migrate(conn, samples_chunk_interval=TWO_HOURS, sql_dir=tmp_path / "sql")


def test_a_failing_migration_rolls_back_alone(empty_database: str, tmp_path: Path) -> None:
    shutil.copytree(SQL_DIR, tmp_path / "sql")
    broken = tmp_path / "sql" / f"{len(discover()) + 1:04d}_broken.sql"
    broken.write_text("CREATE TABLE vigil.half_done (x int);\nSELECT no_such_function();\n")
    with connect(empty_database) as conn:
        with pytest.raises(MigrationError, match="_broken failed: function no_such_function"):
            migrate(conn, samples_chunk_interval=TWO_HOURS, sql_dir=tmp_path / "sql")
        assert conn.execute("SELECT to_regclass('vigil.half_done')").fetchone() == (None,)
        applied = conn.execute("SELECT count(*) FROM vigil.schema_migration").fetchone()
    assert applied == (len(discover()),)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["0001_a.sql", "0003_c.sql"], "migration 0002 is missing"),
        (["0001_a.sql", "02_b.sql"], "02_b.sql: migration files are named"),
    ],
)
def test_misnamed_or_missing_files_are_refused(
    tmp_path: Path, files: list[str], message: str
) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        discover(tmp_path)
