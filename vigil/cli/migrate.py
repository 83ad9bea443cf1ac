"""`vigil migrate`: apply the schema migrations."""

from __future__ import annotations

import typer

from storage.database import redact
from storage.migrations import migrate as apply_migrations
from vigil.cli.failures import database, load_settings


def migrate() -> None:
    """Apply pending schema migrations; safe to run again."""
    settings = load_settings()
    with database(settings) as conn:
        report = apply_migrations(
            conn, samples_chunk_interval=settings.storage.samples_chunk_interval
        )
    for migration in report.applied:
        typer.echo(f"applied {migration.version:04d}_{migration.name}")
    typer.echo(
        f"schema up to date on {redact(settings.database_url)} "
        f"(TimescaleDB {report.timescaledb.version}, {report.timescaledb.license} license)"
    )
