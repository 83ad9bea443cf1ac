"""`vigil retention list|set|unset`: tenants' retention overrides."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from storage import tenants
from storage.retention import (
    list_overrides,
    parse_retention,
    retention_text,
    set_override,
    unset_override,
)
from vigil.cli.failures import database, load_settings
from vigil.wiring import retention_defaults

app = typer.Typer(help="Manage tenants' retention overrides (keep metrics longer).")

_TenantOption = Annotated[str, typer.Option("--tenant", help="The tenant's name.")]
_TierOption = Annotated[str, typer.Option("--tier", help="raw, 1m, 1h or 1d.")]
_PatternOption = Annotated[
    str, typer.Option("--pattern", help="Metric-name glob: '*' any run, '?' one character.")
]


@app.command("list")
def retention_list(
    tenant: _TenantOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List a tenant's retention overrides."""
    with database(load_settings()) as conn:
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


@app.command("set")
def retention_set(
    tenant: _TenantOption,
    tier: _TierOption,
    pattern: _PatternOption,
    keep: Annotated[
        str, typer.Option("--retention", help="Longer than the tier's default, e.g. 30d.")
    ],
) -> None:
    """Keep a tenant's metrics matching a pattern in a tier longer than the default."""
    settings = load_settings()
    with database(settings) as conn:
        found = tenants.get_tenant(conn, tenant)
        override = set_override(
            conn, found.id, tier, pattern, parse_retention(keep), retention_defaults(settings)
        )
    typer.echo(f"{tenant}: {tier} {pattern} kept {retention_text(override.retention)}")


@app.command("unset")
def retention_unset(tenant: _TenantOption, tier: _TierOption, pattern: _PatternOption) -> None:
    """Remove a tenant's override; the data it kept expires on the next retention run."""
    with database(load_settings()) as conn:
        unset_override(conn, tenants.get_tenant(conn, tenant).id, tier, pattern)
    typer.echo(f"{tenant}: {tier} {pattern} back to the default retention")
