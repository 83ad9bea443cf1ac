"""`vigil agentsim`: a simulated fleet of agents, or (--load) benchmark load."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vigil.cli.failures import duration_option, fail, load_settings


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

    settings = load_settings()
    key = api_key
    if key is None:
        key_file = settings.data_dir / "demo-api-key"
        if not key_file.exists():
            fail("no API key: pass --api-key or set VIGIL_API_KEY (or run `vigil up` first)")
        key = key_file.read_text().strip()
    if shape not in ("agent", "remote_write"):
        raise typer.BadParameter("must be agent or remote_write", param_hint="--shape")
    seconds = None if duration is None else duration_option(duration).total_seconds()
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
                interval_s=duration_option(interval).total_seconds(),
                duration_s=seconds,
                seed=seed,
                buffer_dir=settings.data_dir / "agentsim",
                buffer_max_bytes=int(buffer_max_mb * 2**20),
                progress=lambda line: typer.echo(line),
            )
        )
    except KeyboardInterrupt:
        typer.echo("agentsim: interrupted")
