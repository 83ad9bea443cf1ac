"""A fleet of simulated agents in one asyncio process, deterministic with a seed."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from agentsim.agent import DEFAULT_BACKOFF, Agent, AgentStats, Backoff
from agentsim.buffer import DiskBuffer
from agentsim.host import Host

# How often an agent that is waiting to retry checks whether its time has come.
_RETRY_TICK_S = 0.25


async def run_fleet(
    base_url: str,
    api_key: str,
    hosts: int,
    *,
    interval_s: float = 10.0,
    duration_s: float | None = None,
    seed: int = 0,
    buffer_dir: Path,
    buffer_max_bytes: int = 100 * 2**20,
    backoff: Backoff = DEFAULT_BACKOFF,
    progress: Callable[[str], None] | None = print,
    progress_every_s: float = 10.0,
    stop: asyncio.Event | None = None,
) -> AgentStats:
    """Run `hosts` agents (one per simulated host) until `duration_s` passes or `stop` is set.

    Agent i simulates host i of the seed and starts at a fixed offset within the first
    interval, so the fleet's sends are spread out. Each agent buffers under
    `buffer_dir/<host>` (at most `buffer_max_bytes`). At the end every agent tries
    once more to deliver what it holds; the figures returned sum over all agents.
    """
    stop = stop or asyncio.Event()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        agents = [
            Agent(
                Host(index, seed),
                DiskBuffer(buffer_dir / f"host-{index:05d}", buffer_max_bytes),
                client,
                api_key,
                random.Random(f"{seed}:{index}:backoff"),
                backoff,
            )
            for index in range(hosts)
        ]
        started = time.monotonic()
        deadline = None if duration_s is None else started + duration_s
        tasks = [
            asyncio.create_task(
                _run_agent(agent, index * interval_s / hosts, interval_s, deadline, stop)
            )
            for index, agent in enumerate(agents)
        ]
        reporter = None
        if progress is not None:
            reporter = asyncio.create_task(_report(agents, progress, progress_every_s, stop))
        await asyncio.gather(*tasks)
        stop.set()
        if reporter is not None:
            await reporter
        total = _total(agents)
        if progress is not None:
            progress(f"final: {_line(hosts, total)}")
        return total


async def _run_agent(
    agent: Agent,
    offset_s: float,
    interval_s: float,
    deadline: float | None,
    stop: asyncio.Event,
) -> None:
    next_collect = time.monotonic() + offset_s
    while not stop.is_set():
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        if now >= next_collect:
            agent.collect(time.time())
            next_collect += interval_s
        await agent.deliver()
        wake = next_collect
        if len(agent.buffer):
            wake = min(wake, max(agent.retry_at, now + _RETRY_TICK_S))
        if deadline is not None:
            wake = min(wake, deadline)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, wake - time.monotonic()))
    agent.retry_at = 0.0
    await agent.deliver()


async def _report(
    agents: list[Agent], progress: Callable[[str], None], every_s: float, stop: asyncio.Event
) -> None:
    while True:
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return
        except TimeoutError:
            progress(_line(len(agents), _total(agents)))


def _total(agents: list[Agent]) -> AgentStats:
    total = AgentStats()
    for agent in agents:
        total.add(agent.snapshot())
    return total


def _line(hosts: int, stats: AgentStats) -> str:
    return (
        f"hosts={hosts} collected={stats.collected} accepted={stats.accepted} "
        f"rejected={stats.rejected} buffered={stats.buffered} "
        f"dropped_overflow={stats.dropped_overflow} dropped_too_old={stats.dropped_too_old} "
        f"dropped_rejected={stats.dropped_rejected} requests={stats.requests} "
        f"retries={stats.retries}"
    )
