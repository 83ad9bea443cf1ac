"""The `vigil` command line: a thin layer that parses arguments and calls the domain."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType
from typing import Annotated, NoReturn

import psycopg
import typer
from pydantic import ValidationError
from tabulate import tabulate

from api.query import default_step_us, result_body
from ingest.errors import IngestError
from ingest.writer import WriterStats
from querylang.errors import QueryError
from querylang.evaluator.formatting import format_value
from querylang.times import parse_duration as parse_query_duration
from querylang.times import parse_time
from storage import tenants
from storage.database import connect, redact
from storage.errors import StorageError, TenantExists, first_line
from storage.migrations import migrate as apply_migrations
from storage.retention import (
    list_overrides,
    parse_retention,
    retention_text,
    set_override,
    unset_override,
)
from vigil import dagster_instance
from vigil.durations import format_duration, parse_duration
from vigil.services import ServiceError, local_services
from vigil.settings import Settings
from vigil.supervisor import Child, Supervisor
from vigil.wiring import query_service, writer_threads

app = typer.Typer(
    help="Vigil: a metrics monitoring platform on PostgreSQL + TimescaleDB and Redis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
services_app = typer.Typer(help="Run the project-local PostgreSQL + TimescaleDB and Redis.")
tenants_app = typer.Typer(help="Manage tenants and their API keys.")
retention_app = typer.Typer(help="Manage tenants' retention overrides (keep metrics longer).")
dagster_app = typer.Typer(help="Run Dagster (background jobs) on Vigil's instance.")
app.add_typer(services_app, name="services", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants", no_args_is_help=True)
app.add_typer(retention_app, name="retention", no_args_is_help=True)
app.add_typer(dagster_app, name="dagster", no_args_is_help=True)


def _fail(message: str) -> NoReturn:
    typer.echo(f"vigil: error: {message}", err=True)
    raise typer.Exit(1)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = "VIGIL_" + "__".join(str(part) for part in error["loc"]).upper()
        _fail(f"invalid setting {variable}: {error['msg'].removeprefix('Value error, ')}")


@contextmanager
def _expected_failures() -> Iterator[None]:
    """Turn the domain's expected failures into one line on stderr and exit status 1."""
    try:
        yield
    except (StorageError, ServiceError, IngestError, QueryError) as exc:
        _fail(str(exc))
    except psycopg.errors.UndefinedTable as exc:
        _fail(f"{first_line(exc)}: run `vigil migrate` first")
    except psycopg.Error as exc:
        _fail(f"database error: {first_line(exc)}")


@contextmanager
def _database(settings: Settings) -> Iterator[psycopg.Connection]:
    with _expected_failures(), connect(settings.database_url) as conn:
        yield conn


def _duration_option(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@services_app.command("up")
def services_up() -> None:
    """Start the local services (initialising them on first use)."""
    settings = _settings()
    with _expected_failures():
        for service in local_services(settings):
            started = service.up()
            state = service.status()
            verb = "started" if started else ("running" if state.running else "skipped")
            typer.echo(f"{service.name}: {verb} ({state.detail})")


@services_app.command("down")
def services_down() -> None:
    """Stop the local services that `up` started."""
    settings = _settings()
    with _expected_failures():
        for service in reversed(local_services(settings)):
            stopped = service.down()
            typer.echo(f"{service.name}: {'stopped' if stopped else 'not running'}")


@services_app.command("status")
def services_status() -> None:
    """Show whether each local service runs; exit 1 if a managed one is down."""
    settings = _settings()
    healthy = True
    with _expected_failures():
        for service in local_services(settings):
            state = service.status()
            word = "running" if state.running else ("external" if not state.managed else "stopped")
            healthy &= state.running or not state.managed
            typer.echo(f"{state.name}: {word} ({state.detail})")
    if not healthy:
        raise typer.Exit(1)


@app.command()
def migrate() -> None:
    """Apply pending schema migrations; safe to run again."""
    settings = _settings()
    with _database(settings) as conn:
        report = apply_migrations(
            conn, samples_chunk_interval=settings.storage.samples_chunk_interval
        )
    for migration in report.applied:
        typer.echo(f"applied {migration.version:04d}_{migration.name}")
    typer.echo(
        f"schema up to date on {redact(settings.database_url)} "
        f"(TimescaleDB {report.timescaledb.version}, {report.timescaledb.license} license)"
    )


def _print_key(issued: tenants.IssuedKey, as_json: bool) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "tenant_id": str(issued.tenant.id),
                    "tenant": issued.tenant.name,
                    "key_id": issued.key_id,
                    "api_key": issued.key,
                }
            )
        )
        return
    typer.echo(f"tenant  {issued.tenant.name} ({issued.tenant.id})")
    typer.echo(f"key id  {issued.key_id}")
    typer.echo(f"API key {issued.key}")
    typer.echo("The API key is shown only now; store it somewhere safe.")


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits, '.', '_' or '-'.")],
    out_of_order_window: Annotated[
        str, typer.Option(help="How late a sample may arrive, e.g. 2h or 1d.")
    ] = "2h",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a tenant and print its first API key (shown once)."""
    window = _duration_option(out_of_order_window)
    with _database(_settings()) as conn:
        issued = tenants.create_tenant(conn, name, out_of_order_window=window)
    _print_key(issued, as_json)


@tenants_app.command("create-key")
def tenants_create_key(
    name: Annotated[str, typer.Argument(help="The tenant's name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Issue another API key for a tenant (to rotate keys)."""
    with _database(_settings()) as conn:
        issued = tenants.create_api_key(conn, name)
    _print_key(issued, as_json)


@tenants_app.command("list")
def tenants_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List tenants with their out-of-order window and active key count."""
    with _database(_settings()) as conn:
        summaries = tenants.list_tenants(conn)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "tenant_id": str(s.tenant.id),
                        "name": s.tenant.name,
                        "out_of_order_window_s": s.tenant.out_of_order_window.total_seconds(),
                        "active_keys": s.active_keys,
                        "created_at": s.tenant.created_at.isoformat(),
                    }
                    for s in summaries
                ]
            )
        )
        return
    typer.echo(f"{'NAME':<24} {'TENANT ID':<36}  {'OOO WINDOW':>10}  KEYS")
    for s in summaries:
        typer.echo(
            f"{s.tenant.name:<24} {s.tenant.id!s:<36}  "
            f"{format_duration(s.tenant.out_of_order_window):>10}  {s.active_keys}"
        )


@tenants_app.command("revoke-key")
def tenants_revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key id printed when the key was issued.")],
) -> None:
    """Revoke an API key; API workers refuse it (401) within 30 s (their key cache)."""
    with _database(_settings()) as conn:
        tenants.revoke_api_key(conn, key_id)
    typer.echo(f"revoked {key_id}")


_TenantOption = Annotated[str, typer.Option("--tenant", help="The tenant's name.")]
_TierOption = Annotated[str, typer.Option("--tier", help="raw, 1m, 1h or 1d.")]
_PatternOption = Annotated[
    str, typer.Option("--pattern", help="Metric-name glob: '*' any run, '?' one character.")
]


@retention_app.command("list")
def retention_list(
    tenant: _TenantOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List a tenant's retention overrides."""
    with _database(_settings()) as conn:
        overrides = list_overrides(conn, tenants.get_tenant(conn, tenant).id)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "tier": o.tier,
                        "pattern": o.pattern,
                        "retention": retention_text(o.retention),
                        "retention_s": o.retention.total_seconds(),
                        "updated_at": o.updated_at.isoformat(),
                    }
                    for o in overrides
                ]
            )
        )
        return
    typer.echo(f"{'TIER':<5} {'PATTERN':<32} RETENTION")
    for o in overrides:
        typer.echo(f"{o.tier:<5} {o.pattern:<32} {retention_text(o.retention)}")


@retention_app.command("set")
def retention_set(
    tenant: _TenantOption,
    tier: _TierOption,
    pattern: _PatternOption,
    keep: Annotated[
        str, typer.Option("--retention", help="Longer than the tier's default, e.g. 30d.")
    ],
) -> None:
    """Keep a tenant's metrics matching a pattern in a tier longer than the default."""
    settings = _settings()
    with _database(settings) as conn:
        found = tenants.get_tenant(conn, tenant)
        override = set_override(
            conn, found.id, tier, pattern, parse_retention(keep), settings.retention
        )
    typer.echo(f"{tenant}: {tier} {pattern} kept {retention_text(override.retention)}")


@retention_app.command("unset")
def retention_unset(tenant: _TenantOption, tier: _TierOption, pattern: _PatternOption) -> None:
    """Remove a tenant's override; the data it kept expires on the next retention run."""
    with _database(_settings()) as conn:
        unset_override(conn, tenants.get_tenant(conn, tenant).id, tier, pattern)
    typer.echo(f"{tenant}: {tier} {pattern} back to the default retention")


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the HTTP API (ingestion) until interrupted."""
    import uvicorn

    _settings()  # fail with one line on bad settings, before workers start
    uvicorn.run(
        "vigil.wiring:api_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


@app.command()
def writer(
    consumers: Annotated[int, typer.Option(min=1, help="Consumer-group members (threads).")] = 2,
    report_every: Annotated[
        float, typer.Option(help="Seconds between progress lines; 0 for none.")
    ] = 10.0,
) -> None:
    """Move samples from the bus into TimescaleDB, exactly once, until interrupted."""
    settings = _settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stats = WriterStats()
    with _expected_failures():
        threads = writer_threads(settings, consumers, stop, stats)
    for thread in threads:
        thread.start()
    typer.echo(f"writer: {consumers} consumers on the {settings.bus.kind} bus")
    while not stop.wait(report_every if report_every > 0 else 1.0):
        if not all(thread.is_alive() for thread in threads):
            stop.set()
            for thread in threads:
                thread.join()
            _fail("a writer thread died (see the traceback above); exiting so it is restarted")
        if report_every <= 0:
            continue
        with stats.lock:
            typer.echo(
                f"writer: samples={stats.samples} envelopes={stats.envelopes} "
                f"duplicates={stats.duplicates} db_retries={stats.db_retries} "
                f"lag={stats.lag_s:.1f}s",
            )
    for thread in threads:
        thread.join()


@app.command()
def agentsim(
    url: Annotated[str, typer.Option(help="Vigil API base URL.")] = "http://127.0.0.1:8080",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="VIGIL_API_KEY", help="Tenant API key; default: the demo key."),
    ] = None,
    hosts: Annotated[int, typer.Option(min=1, help="Simulated hosts (one agent each).")] = 200,
    interval: Annotated[str, typer.Option(help="Collection and flush interval.")] = "10s",
    duration: Annotated[
        str | None,
        typer.Option(help="Stop after this long, e.g. 5m; default: until Ctrl-C (--load: 60s)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Makes the simulated metrics reproducible.")] = 0,
    buffer_max_mb: Annotated[
        float, typer.Option(help="On-disk buffer bound per agent, MB (oldest dropped).")
    ] = 100.0,
    load: Annotated[
        bool, typer.Option("--load", help="Load mode: pre-built batches as fast as accepted.")
    ] = False,
    shape: Annotated[
        str, typer.Option(help="Load mode batch shape: agent (protobuf) or remote_write.")
    ] = "agent",
    series: Annotated[int, typer.Option(min=1, help="Load mode: distinct series.")] = 100_000,
    batch_samples: Annotated[
        int | None, typer.Option(help="Load mode: samples per request (500 / 10,000).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Load mode: requests in flight.")] = 8,
) -> None:
    """Simulate a fleet of agents pushing metrics, or (--load) generate benchmark load."""
    import asyncio

    from agentsim.fleet import run_fleet
    from agentsim.load import run_load

    settings = _settings()
    key = api_key
    if key is None:
        key_file = settings.data_dir / "demo-api-key"
        if not key_file.exists():
            _fail("no API key: pass --api-key or set VIGIL_API_KEY (or run `vigil up` first)")
        key = key_file.read_text().strip()
    if shape not in ("agent", "remote_write"):
        raise typer.BadParameter("must be agent or remote_write", param_hint="--shape")
    seconds = None if duration is None else _duration_option(duration).total_seconds()
    try:
        if load:
            stats = asyncio.run(
                run_load(
                    url,
                    key,
                    shape="agent" if shape == "agent" else "remote_write",
                    series=series,
                    batch_samples=batch_samples,
                    concurrency=concurrency,
                    duration_s=seconds or 60.0,
                )
            )
            typer.echo(
                json.dumps(
                    {
                        "shape": stats.shape,
                        "requests": stats.requests,
                        "samples_sent": stats.samples_sent,
                        "samples_accepted": stats.samples_accepted,
                        "accepted_per_s": round(stats.accepted_per_s),
                        "statuses": dict(stats.statuses),
                    }
                )
            )
            return
        asyncio.run(
            run_fleet(
                url,
                key,
                hosts,
                interval_s=_duration_option(interval).total_seconds(),
                duration_s=seconds,
                seed=seed,
                buffer_dir=settings.data_dir / "agentsim",
                buffer_max_bytes=int(buffer_max_mb * 2**20),
                progress=lambda line: typer.echo(line),
            )
        )
    except KeyboardInterrupt:
        typer.echo("agentsim: interrupted")


@app.command()
def query(
    expr: Annotated[str, typer.Argument(help="PromQL expression.")],
    start: Annotated[str, typer.Option(help="Unix seconds, RFC 3339, now or -1h.")] = "-1h",
    end: Annotated[str, typer.Option(help="Unix seconds, RFC 3339, now or -5m.")] = "now",
    step: Annotated[
        str | None, typer.Option(help="Seconds or a duration; default about 250 points.")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant whose data is queried.")] = "demo",
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
    include_late_data: Annotated[
        bool, typer.Option(help="Read raw samples instead of rollups (within raw retention).")
    ] = False,
) -> None:
    """Run a PromQL range query against the database and print a table, the storage
    tiers that answered and where a rollup tier answered approximately."""
    settings = _settings()
    with _expected_failures():
        now = time.time_ns() // 1000
        start_us = parse_time(start, now, "start")
        end_us = parse_time(end, now, "end")
        step_us = parse_query_duration(step, "step") if step else default_step_us(start_us, end_us)
        with connect(settings.database_url) as conn:
            tenant_id = str(tenants.get_tenant(conn, tenant).id)
        result = query_service(settings).range_query(
            tenant_id, expr, start_us, end_us, step_us, now, include_late_data=include_late_data
        )
    if as_json:
        body = {
            "tiers": list(result.tiers),
            "approximations": list(result.notes),
            "series": result_body(result),
        }
        typer.echo(json.dumps(body))
        return
    if not result.series:
        typer.echo("no data")
        return
    for series in result.series:
        labels = ", ".join(f'{k}="{v}"' for k, v in series.labels if k != "__name__")
        name = dict(series.labels).get("__name__", "")
        typer.echo(f"{name}{{{labels}}}")
        rows = [
            (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t / 1e6)), format_value(v))
            for t, v in zip(series.times_us.tolist(), series.values.tolist(), strict=True)
        ]
        typer.echo(tabulate(rows, headers=["time (UTC)", "value"], tablefmt="simple"))
        typer.echo("")
    typer.echo(f"{len(result.series)} series, tier: {', '.join(result.tiers)}")
    for note in result.notes:
        typer.echo(f"approximate: {note}")


def _exec_dagster(settings: Settings, command: list[str]) -> NoReturn:
    """Replace this process with a Dagster program on Vigil's instance, so signals sent
    to `vigil dagster …` (as `vigil up` stops it) reach Dagster itself."""
    with _expected_failures():
        env = {**os.environ, **dagster_instance.environment(settings)}
    sys.stdout.flush()
    os.execve(command[0], command, env)


@dagster_app.command("webserver")
def dagster_webserver(
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1; default: VIGIL_DAGSTER__PORT.")
    ] = None,
) -> None:
    """Serve the Dagster UI for Vigil's jobs on 127.0.0.1."""
    settings = _settings()
    with _expected_failures():
        command = dagster_instance.webserver_command(port or settings.dagster.port)
    _exec_dagster(settings, command)


@dagster_app.command("daemon")
def dagster_daemon() -> None:
    """Run the Dagster daemon: Vigil's schedules, sensors and run queue."""
    settings = _settings()
    with _expected_failures():
        command = dagster_instance.daemon_command()
    _exec_dagster(settings, command)


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


@app.command()
def up(
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8080,
    hosts: Annotated[int, typer.Option(min=0, help="Simulated hosts pushing metrics.")] = 200,
    dagster_port: Annotated[
        int | None, typer.Option(help="Port of the Dagster UI; default: VIGIL_DAGSTER__PORT.")
    ] = None,
) -> None:
    """Run a local Vigil: services, API, writer, Dagster and a simulated fleet; Ctrl-C
    stops it."""
    settings = _settings()
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
        with _expected_failures():
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
        with _expected_failures():
            for service in reversed(started):
                service.down()
                typer.echo(f"{service.name}: stopped")
