"""The clock agents run on: wall time for samples, monotonic time and sleep for scheduling.

Agents never call `time` or `asyncio.sleep` themselves, so a test can hand them a clock
that jumps forward and simulate a ten-minute outage in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time, monotonic time and sleeping, as one replaceable object."""

    def time(self) -> float:
        """Unix seconds now."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for deadlines and backoff."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait this many seconds of this clock's time."""
        ...


class SystemClock:
    """The real clock: `time.time`, `time.monotonic`, `asyncio.sleep`."""

    def time(self) -> float:
        """Unix seconds now."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds on the system's monotonic clock."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep in the event loop."""
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


async def pause(clock: Clock, seconds: float, stop: asyncio.Event) -> None:
    """Sleep `seconds` on `clock`, or less if `stop` is set meanwhile."""
    if stop.is_set():
        return
    sleeping = asyncio.ensure_future(clock.sleep(max(0.0, seconds)))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeping.cancel()
        stopping.cancel()
