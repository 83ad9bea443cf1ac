"""`vigil services up|down|status`: the project-local PostgreSQL + TimescaleDB and Redis."""

from __future__ import annotations

import typer

from vigil.cli.failures import expected_failures, load_settings
from vigil.services import local_services

app = typer.Typer(help="Run the project-local PostgreSQL + TimescaleDB and Redis.")


@app.command("up")
def services_up() -> None:
    """Start the local services (initialising them on first use)."""
    settings = load_settings()
    with expected_failures():
        for service in local_services(settings):
            started = service.up()
            state = service.status()
            verb = "started" if started else ("running" if state.running else "skipped")
            typer.echo(f"{service.name}: {verb} ({state.detail})")


@app.command("down")
def services_down() -> None:
    """Stop the local services that `up` started."""
    settings = load_settings()
    with expected_failures():
        for service in reversed(local_services(settings)):
            stopped = service.down()
            typer.echo(f"{service.name}: {'stopped' if stopped else 'not running'}")


@app.command("status")
def services_status() -> None:
    """Show whether each local service runs; exit 1 if a managed one is down."""
    settings = load_settings()
    healthy = True
    with expected_failures():
        for service in local_services(settings):
            state = service.status()
            word = "running" if state.running else ("external" if not state.managed else "stopped")
            healthy &= state.running or not state.managed
            typer.echo(f"{state.name}: {word} ({state.detail})")
    if not healthy:
        raise typer.Exit(1)
