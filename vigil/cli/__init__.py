"""The `vigil` command line: one thin module per command or group, assembled into one app."""

from __future__ import annotations

import typer

from vigil.cli import (
    agentsim,
    dagster,
    migrate,
    processes,
    query,
    retention,
    services,
    tenants,
    up,
)

app = typer.Typer(
    help="Vigil: a metrics monitoring platform on PostgreSQL + TimescaleDB and Redis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(migrate.migrate)
app.command()(processes.api)
app.command()(processes.writer)
app.command()(agentsim.agentsim)
app.command()(query.query)
app.command()(up.up)
app.add_typer(services.app, name="services", no_args_is_help=True)
app.add_typer(tenants.app, name="tenants", no_args_is_help=True)
app.add_typer(retention.app, name="retention", no_args_is_help=True)
app.add_typer(dagster.app, name="dagster", no_args_is_help=True)
