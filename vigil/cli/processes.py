"""`vigil api` and `vigil writer`: the long-running processes of the write and read paths."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer

from ingest.writer import WriterStats
from vigil.cli.failures import expected_failures, fail, load_settings
from vigil.wiring import writer_threads


def api(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the HTTP API (ingestion) until interrupted."""
    import uvicorn

    load_settings()  # fail with one line on bad settings, before workers start
    uvicorn.run(
        "vigil.wiring:api_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


def writer(
    consumers: Annotated[int, typer.Option(min=1, help="Consumer-group members (threads).")] = 2,
    report_every: Annotated[
        float, typer.Option(help="Seconds between progress lines; 0 for none.")
    ] = 10.0,
) -> None:
    """Move samples from the bus into TimescaleDB, exactly once, until interrupted."""
    settings = load_settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stats = WriterStats()
    with expected_failures():
        threads = writer_threads(settings, consumers, stop, stats)
    for thread in threads:
        thread.start()
    typer.echo(f"writer: {consumers} consumers on the {settings.bus.kind} bus")
    while not stop.wait(report_every if report_every > 0 else 1.0):
        if not all(thread.is_alive() for thread in threads):
            stop.set()
            for thread in threads:
                thread.join()
            fail("a writer thread died (see the traceback above); exiting so it is restarted")
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
