"""`vigil up`: a whole local Vigil under one supervisor, until Ctrl-C."""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType
from typing import Annotated

import psycopg
import typer

from storage import tenants
from storage.database import connect, redact
from storage.errors import TenantExists
from storage.migrations import migrate as apply_migrations
from vigil import dagster_instance
from vigil.cli.failures import expected_failures, load_settings
from vigil.services import local_services
from vigil.settings import Settings
from vigil.supervisor import Child, Supervisor


def _demo_key(settings: Settings, conn: psycopg.Connection) -> str:
    """The demo tenant's API key, kept in the data folder so every `vigil up` shows it."""
    key_file = settings.data_dir / "demo-api-key"
    if key_file.exists():
        key = key_file.read_text().strip()
        if tenants.authenticate(conn, key) is not None:
            return key
    try:
        issued = tenants.create_tenant(conn, "demo")
    except TenantExists:
        issued = tenants.create_api_key(conn, "demo")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.touch(mode=0o600)
    key_file.chmod(0o600)
    key_file.write_text(issued.key + "\n")
    return issued.key


def up(
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8080,
    hosts: Annotated[int, typer.Option(min=0, help="Simulated hosts pushing metrics.")] = 200,
    dagster_port: Annotated[
        int | None, typer.Option(help="Port of the Dagster UI; default: VIGIL_DAGSTER__PORT.")
    ] = None,
) -> None:
    """Run a local Vigil: services, API, writer, Dagster and a simulated fleet; Ctrl-C
    stops it."""
    settings = load_settings()
    dagster_port = dagster_port or settings.dagster.port
    started = []
    stop = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    supervisor = None
    try:
        with expected_failures():
            for service in local_services(settings):
                if service.up():
                    started.append(service)
            with connect(settings.database_url) as conn:
                apply_migrations(
                    conn, samples_chunk_interval=settings.storage.samples_chunk_interval
                )
                key = _demo_key(settings, conn)
            dagster_instance.prepare(settings)
        logs = settings.data_dir / "log"
        url = f"http://127.0.0.1:{port}"
        children = [
            Child("api", ["api", "--port", str(port)], logs / "api.log"),
            Child("writer", ["writer", "--report-every", "30"], logs / "writer.log"),
            Child(
                "dagster-webserver",
                ["dagster", "webserver", "--port", str(dagster_port)],
                logs / "dagster-webserver.log",
            ),
            Child("dagster-daemon", ["dagster", "daemon"], logs / "dagster-daemon.log"),
        ]
        if hosts:
            children.append(
                Child(
                    "agentsim",
                    ["agentsim", "--url", url, "--hosts", str(hosts)],
                    logs / "agentsim.log",
                    env={"VIGIL_API_KEY": key},
                )
            )
        supervisor = Supervisor(children, lambda line: typer.echo(f"vigil up: {line}"))
        supervisor.start()
        typer.echo("Vigil is up.")
        typer.echo(f"  API         {url}  (POST /v1/metrics/ingest, POST /api/v1/write)")
        typer.echo(
            f"  Dagster     http://127.0.0.1:{dagster_port}  (jobs: rollup, rollup_repair, "
            "retention)"
        )
        typer.echo(f"  PostgreSQL  {redact(settings.database_url)}")
        typer.echo(f"  Redis       {redact(settings.redis_url)}  ({settings.bus.kind} bus)")
        typer.echo("  tenant      demo")
        typer.echo(f"  API key     {key}")
        typer.echo(f"  fleet       {hosts} simulated hosts, every 10s")
        typer.echo(
            f"  logs        {logs}/{{api,writer,agentsim,dagster-webserver,dagster-daemon}}.log"
        )
        typer.echo("Press Ctrl-C to stop.")
        sys.stdout.flush()
        while not stop:
            time.sleep(1)
            supervisor.check()
    finally:
        if supervisor is not None:
            supervisor.stop()
        with expected_failures():
            for service in reversed(started):
                service.down()
                typer.echo(f"{service.name}: stopped")
