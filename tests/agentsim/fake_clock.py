"""A clock that only moves when someone sleeps on it, with events scheduled at set times."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

EPOCH = 1_800_000_000.0  # the wall time at monotonic 0


class FakeClock:
    """Monotonic time starts at 0 and jumps by each sleep; due events run as it passes them.

    Good for one agent at a time: concurrent sleepers would each move it by their own wait.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._events: list[tuple[float, Callable[[], None]]] = []

    def time(self) -> float:
        """Unix seconds now."""
        return EPOCH + self.now

    def monotonic(self) -> float:
        """Seconds since the clock was made."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Jump ahead by `seconds`, running the events passed on the way."""
        self.advance_to(self.now + max(0.0, seconds))
        await asyncio.sleep(0)

    def advance_to(self, when: float) -> None:
        """Jump to monotonic time `when` (never backwards), running due events in order."""
        self._events.sort(key=lambda event: event[0])
        while self._events and self._events[0][0] <= when:
            at, action = self._events.pop(0)
            self.now = max(self.now, at)
            action()
        self.now = max(self.now, when)

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run `action` when the clock reaches `when`."""
        self._events.append((when, action))
