"""A stand-in ingest server and a fake clock for the agentsim tests (no databases needed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agentsim.fake_clock import FakeClock
from tests.agentsim.receiver import Receiver


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def receiver(clock: FakeClock) -> Iterator[Receiver]:
    """A running receiver that stamps requests with the fake clock's monotonic time."""
    server = Receiver(clock.monotonic)
    server.start()
    yield server
    server.stop()
