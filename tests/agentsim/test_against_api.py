"""Agents against the real API, bus, writer and database: outages and overflow end to end."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import psycopg

from agentsim.backoff import Backoff
from agentsim.fleet import run_fleet
from storage.tenants import IssuedKey
from tests.live_servers import api_server, free_port, wait_until, writers
from tests.stored import sample_count
from vigil.settings import Settings

FAST_BACKOFF = Backoff(base_s=0.2, cap_s=1.0)


def stored(conn: psycopg.Connection, issued: IssuedKey) -> int:
    return sample_count(conn, issued.tenant.id)


def test_api_down_for_20s_then_everything_is_delivered(
    bus_settings: Settings, issued: IssuedKey, conn: psycopg.Connection, tmp_path: Path
) -> None:
    port = free_port()
    phases: list[str] = []

    def outage() -> None:
        with api_server(bus_settings, port):
            time.sleep(3)
        phases.append("down")  # connections are refused for 20 s
        time.sleep(20)
        with api_server(bus_settings, port):
            phases.append("back")
            time.sleep(12)

    server = threading.Thread(target=outage)
    server.start()
    time.sleep(0.5)
    lines: list[str] = []
    with writers(bus_settings):
        result = asyncio.run(
            run_fleet(
                f"http://127.0.0.1:{port}",
                issued.key,
                4,
                interval_s=1.0,
                duration_s=33,
                buffer_dir=tmp_path,
                backoff=FAST_BACKOFF,
                progress=lines.append,
                progress_every_s=2,
            )
        )
        server.join()
        stats = result.totals
        wait_until(lambda: stored(conn, issued) >= stats.collected, timeout_s=20)
    assert phases == ["down", "back"]
    assert stats.retries > 0
    assert any("buffered=0 " not in line for line in lines), lines  # it did buffer
    assert stats.buffered == 0 and stats.dropped == 0
    assert stats.accepted == stats.collected > 0
    assert stored(conn, issued) == stats.collected


def test_overflowing_buffer_drops_oldest_and_counts_it(issued: IssuedKey, tmp_path: Path) -> None:
    result = asyncio.run(
        run_fleet(
            f"http://127.0.0.1:{free_port()}",
            issued.key,
            1,
            interval_s=0.05,
            duration_s=2,
            buffer_dir=tmp_path,
            buffer_max_bytes=20_000,
            backoff=FAST_BACKOFF,
            progress=None,
            drain_s=0.1,
        )
    )
    stats = result.totals
    assert stats.dropped_overflow > 0 and stats.accepted == 0
    assert stats.buffered + stats.dropped_overflow == stats.collected
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) <= 20_000
