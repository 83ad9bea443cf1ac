"""A fleet of simulated agents in one asyncio process, deterministic with a seed."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agentsim.agent import Agent, AgentStats
from agentsim.backoff import DEFAULT_BACKOFF, Backoff
from agentsim.buffer import DEFAULT_MAX_BYTES, DiskBuffer
from agentsim.clock import SYSTEM_CLOCK, Clock, pause
from agentsim.host import Host


@dataclass
class FleetStats:
    """A fleet run: how many hosts, how long, and every agent's figures summed."""

    hosts: int
    elapsed_s: float = 0.0
    totals: AgentStats = field(default_factory=AgentStats)

    def line(self) -> str:
        """One progress line, `key=value` pairs."""
        t = self.totals
        return (
            f"hosts={self.hosts} collected={t.collected} sent={t.sent} accepted={t.accepted} "
            f"rejected={t.rejected} buffered={t.buffered} dropped={t.dropped} "
            f"dropped_overflow={t.dropped_overflow} dropped_too_old={t.dropped_too_old} "
            f"dropped_rejected={t.dropped_rejected} requests={t.requests} retries={t.retries}"
        )


async def run_fleet(
    base_url: str,
    api_key: str,
    hosts: int,
    *,
    interval_s: float = 10.0,
    duration_s: float | None = None,
    seed: int = 0,
    buffer_dir: Path,
    buffer_max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Callable[[str], None] | None = print,
    progress_every_s: float = 5.0,
    backoff: Backoff = DEFAULT_BACKOFF,
    compress: bool = False,
    drain_s: float = 10.0,
    stop: asyncio.Event | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> FleetStats:
    """Run `hosts` agents against `base_url` until `duration_s` passes, `stop` is set or cancelled.

    - `api_key`: sent as `Authorization: Bearer <api_key>` by every agent.
    - `interval_s`: each agent collects and flushes once per interval; agent i starts at
      `i * interval_s / hosts`, so the fleet's requests are spread over the interval.
    - `duration_s`: None runs until `stop` is set or the task is cancelled.
    - `seed`: agent i simulates host i of this seed (`host-0000i`); same seed, same metrics.
    - `buffer_dir`: agent i buffers under `buffer_dir/host-0000i`; what is left there at
      exit is delivered by the next run with the same directory.
    - `buffer_max_bytes`: bound of each agent's buffer; the oldest batches are dropped.
    - `progress`: called with a `hosts=… sent=… accepted=…` line every `progress_every_s`
      and once at the end (prefixed `final: `); None for silence.
    - `backoff`, `compress`: retry timing and gzip bodies; `drain_s`: how long the final
      delivery attempt may take at the end of a timed run.
    Returns the summed figures of every agent.
    """
    stop = stop or asyncio.Event()
    stats = FleetStats(hosts)
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
                compress,
                clock,
            )
            for index in range(hosts)
        ]
        started = clock.monotonic()
        until = None if duration_s is None else started + duration_s
        reporter = None
        if progress is not None:
            reporter = asyncio.create_task(
                _report(agents, stats, progress, progress_every_s, stop, clock)
            )
        try:
            await asyncio.gather(
                *(
                    agent.run(
                        interval_s, start_in_s=index * interval_s / hosts, until=until, stop=stop
                    )
                    for index, agent in enumerate(agents)
                )
            )
            # The rest stays on disk for the next run if the server is still unreachable.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(a.flush() for a in agents)), drain_s)
        finally:
            # Also on cancellation (Ctrl-C): the final figures are still reported.
            stop.set()
            if reporter is not None:
                reporter.cancel()
            _total(agents, stats, clock.monotonic() - started)
            if progress is not None:
                progress(f"final: {stats.line()}")
    return stats


async def _report(
    agents: list[Agent],
    stats: FleetStats,
    progress: Callable[[str], None],
    every_s: float,
    stop: asyncio.Event,
    clock: Clock,
) -> None:
    started = clock.monotonic()
    while True:
        await pause(clock, every_s, stop)
        if stop.is_set():
            return
        _total(agents, stats, clock.monotonic() - started)
        progress(stats.line())


def _total(agents: list[Agent], stats: FleetStats, elapsed_s: float) -> None:
    totals = AgentStats()
    for agent in agents:
        totals.add(agent.snapshot())
    stats.totals = totals
    stats.elapsed_s = elapsed_s
