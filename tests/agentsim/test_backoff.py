"""Backoff: full jitter under an exponential cap, and the server's Retry-After read safely."""

from __future__ import annotations

import random

import httpx
import pytest

from agentsim.backoff import Backoff, retry_after_s


def test_delays_are_jittered_below_a_doubling_capped_ceiling() -> None:
    backoff, rng = Backoff(base_s=1.0, cap_s=60.0), random.Random(0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (5, 32.0), (6, 60.0), (500, 60.0)]:
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2, "full jitter"


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), (None, None), ("soon", None), ("nan", None)],
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    headers = {} if header is None else {"Retry-After": header}
    assert retry_after_s(httpx.Response(503, headers=headers)) == expected
