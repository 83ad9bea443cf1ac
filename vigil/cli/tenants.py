"""`vigil tenants create|create-key|list|revoke-key`: tenants and their API keys."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from storage import tenants
from storage.durations import format_duration
from vigil.cli.failures import database, duration_option, load_settings

app = typer.Typer(help="Manage tenants and their API keys.")


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


@app.command("create")
def tenants_create(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits, '.', '_' or '-'.")],
    out_of_order_window: Annotated[
        str, typer.Option(help="How late a sample may arrive, e.g. 2h or 1d.")
    ] = "2h",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a tenant and print its first API key (shown once)."""
    window = duration_option(out_of_order_window)
    with database(load_settings()) as conn:
        issued = tenants.create_tenant(conn, name, out_of_order_window=window)
    _print_key(issued, as_json)


@app.command("create-key")
def tenants_create_key(
    name: Annotated[str, typer.Argument(help="The tenant's name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Issue another API key for a tenant (to rotate keys)."""
    with database(load_settings()) as conn:
        issued = tenants.create_api_key(conn, name)
    _print_key(issued, as_json)


@app.command("list")
def tenants_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List tenants with their out-of-order window and active key count."""
    with database(load_settings()) as conn:
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


@app.command("revoke-key")
def tenants_revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key id printed when the key was issued.")],
) -> None:
    """Revoke an API key; API workers refuse it (401) within 30 s (their key cache)."""
    with database(load_settings()) as conn:
        tenants.revoke_api_key(conn, key_id)
    typer.echo(f"revoked {key_id}")
