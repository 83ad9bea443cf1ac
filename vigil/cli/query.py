"""`vigil query`: a PromQL range query against the database, as a table or the API's JSON."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from tabulate import tabulate

from api.query import default_step_us
from api.responses import query_body
from querylang.evaluator.formatting import format_value
from querylang.planner import AUTO, check_tier
from querylang.times import parse_duration, parse_time
from storage import tenants
from storage.database import connect
from vigil.cli.failures import expected_failures, load_settings
from vigil.wiring import query_service


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
    tier: Annotated[
        str,
        typer.Option(help="The storage tier to read: raw, 1m, 1h, 1d, or auto (the planner's)."),
    ] = AUTO,
) -> None:
    """Run a PromQL range query against the database and print a table, the storage
    tiers that answered and where a rollup tier answered approximately."""
    settings = load_settings()
    with expected_failures():
        tier = check_tier(tier)
        now = time.time_ns() // 1000
        start_us = parse_time(start, now, "start")
        end_us = parse_time(end, now, "end")
        step_us = parse_duration(step, "step") if step else default_step_us(start_us, end_us)
        with connect(settings.database_url) as conn:
            tenant_id = str(tenants.get_tenant(conn, tenant).id)
        result = query_service(settings).range_query(
            tenant_id,
            expr,
            start_us,
            end_us,
            step_us,
            now,
            include_late_data=include_late_data,
            tier=tier,
        )
    if as_json:
        typer.echo(json.dumps(query_body(expr, start_us, end_us, step_us, result)))
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
