"""Agents against the real API: outages, overflow, refusals, rate limits, stale data."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from agentsim.agent import Agent, Backoff
from agentsim.buffer import DiskBuffer
from agentsim.fleet import run_fleet
from agentsim.host import Host
from storage.tenants import IssuedKey
from tests.live_servers import api_server, free_port, writers
from vigil.settings import Settings

FAST_BACKOFF = Backoff(base_s=0.2, cap_s=1.0)


def stored(conn: psycopg.Connection, issued: IssuedKey) -> int:
    row = conn.execute(
        "SELECT count(*) FROM vigil.samples r JOIN vigil.series s ON s.id = r.series_id "
        "WHERE s.tenant_id = %s",
        (issued.tenant.id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def writer(bus_settings: Settings) -> Iterator[None]:
    with writers(bus_settings):
        yield


def test_server_down_for_20s_then_everything_is_delivered(
    bus_settings: Settings,
    issued: IssuedKey,
    conn: psycopg.Connection,
    writer: None,
    tmp_path: Path,
) -> None:
    port = free_port()
    down = threading.Event()
    back = threading.Event()

    def outage() -> None:
        with api_server(bus_settings, port):
            time.sleep(3)
        down.set()  # the API is gone: connections are refused for 20 s
        time.sleep(20)
        with api_server(bus_settings, port):
            back.set()
            time.sleep(12)

    server = threading.Thread(target=outage)
    server.start()
    time.sleep(0.5)
    lines: list[str] = []
    stats = asyncio.run(
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
    assert down.is_set() and back.is_set()
    assert stats.retries > 0
    assert any("buffered=" in line and "buffered=0 " not in line for line in lines), lines
    assert stats.buffered == 0 and stats.dropped_overflow == 0
    assert stats.accepted == stats.collected > 0
    deadline = time.monotonic() + 20
    while stored(conn, issued) < stats.collected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stored(conn, issued) == stats.collected


def test_overflowing_buffer_drops_oldest_and_counts_it(issued: IssuedKey, tmp_path: Path) -> None:
    stats = asyncio.run(
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
        )
    )
    assert stats.dropped_overflow > 0 and stats.accepted == 0
    assert stats.buffered + stats.dropped_overflow == stats.collected
    assert sum(p.stat().st_size for p in tmp_path.rglob("*.batch")) <= 20_000


async def deliver_once(base_url: str, key: str, tmp_path: Path, collect_at: float) -> Agent:
    async with httpx.AsyncClient(base_url=base_url) as client:
        agent = Agent(Host(0, 1), DiskBuffer(tmp_path), client, key, random.Random(0), FAST_BACKOFF)
        agent.collect(collect_at)
        await agent.deliver()
        return agent


def test_a_4xx_is_dropped_never_retried(bus_settings: Settings, tmp_path: Path) -> None:
    with api_server(bus_settings) as base_url:
        agent = asyncio.run(deliver_once(base_url, "not-a-key", tmp_path, time.time()))
    assert agent.stats.requests == 1 and agent.stats.retries == 0
    assert agent.stats.dropped_rejected == agent.stats.collected > 0
    assert len(agent.buffer) == 0


def test_too_old_samples_are_dropped_not_retried(
    bus_settings: Settings, issued: IssuedKey, tmp_path: Path
) -> None:
    with api_server(bus_settings) as base_url:
        agent = asyncio.run(deliver_once(base_url, issued.key, tmp_path, time.time() - 3 * 3600))
    assert agent.stats.dropped_too_old == agent.stats.collected > 0
    assert agent.stats.accepted == 0 and len(agent.buffer) == 0


def test_429_is_retried_no_sooner_than_retry_after(
    bus_settings: Settings, issued: IssuedKey, tmp_path: Path
) -> None:
    ingest = bus_settings.ingest.model_copy(update={"requests_per_s": 0.5, "request_burst": 1})
    limited = bus_settings.model_copy(update={"ingest": ingest})

    async def scenario(base_url: str) -> tuple[Agent, float]:
        async with httpx.AsyncClient(base_url=base_url) as client:
            agent = Agent(
                Host(0, 1),
                DiskBuffer(tmp_path),
                client,
                issued.key,
                random.Random(0),
                Backoff(base_s=0.01, cap_s=0.01),
            )
            agent.collect(time.time())
            agent.collect(time.time() + 1)
            began = time.monotonic()
            await agent.deliver()  # first accepted, second gets 429 with Retry-After: 2
            assert len(agent.buffer) == 1 and agent.stats.retries == 1
            while len(agent.buffer):
                await asyncio.sleep(0.05)
                await agent.deliver()
            return agent, time.monotonic() - began

    with api_server(limited) as base_url:
        agent, elapsed = asyncio.run(scenario(base_url))
    assert agent.stats.accepted == agent.stats.collected
    assert elapsed >= 1.9  # 1 token per 2 s: Retry-After said 2 s, the agent waited
