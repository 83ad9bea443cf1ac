"""`vigil dagster webserver|daemon`: Dagster, on Vigil's instance, runs the background jobs."""

from __future__ import annotations

import os
import sys
from typing import Annotated, NoReturn

import typer

from vigil import dagster_instance
from vigil.cli.failures import expected_failures, load_settings
from vigil.settings import Settings

app = typer.Typer(help="Run Dagster (background jobs) on Vigil's instance.")


def _exec_dagster(settings: Settings, command: list[str]) -> NoReturn:
    """Replace this process with a Dagster program on Vigil's instance, so signals sent
    to `vigil dagster …` (as `vigil up` stops it) reach Dagster itself."""
    with expected_failures():
        env = {**os.environ, **dagster_instance.environment(settings)}
    sys.stdout.flush()
    os.execve(command[0], command, env)


@app.command("webserver")
def dagster_webserver(
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1; default: VIGIL_DAGSTER__PORT.")
    ] = None,
) -> None:
    """Serve the Dagster UI for Vigil's jobs on 127.0.0.1."""
    settings = load_settings()
    with expected_failures():
        command = dagster_instance.webserver_command(port or settings.dagster.port)
    _exec_dagster(settings, command)


@app.command("daemon")
def dagster_daemon() -> None:
    """Run the Dagster daemon: Vigil's schedules, sensors and run queue."""
    settings = load_settings()
    with expected_failures():
        command = dagster_instance.daemon_command()
    _exec_dagster(settings, command)
