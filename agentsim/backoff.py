"""When to try again: exponential backoff with full jitter, never sooner than Retry-After."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""

    base_s: float = 1.0
    cap_s: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first)."""
        return rng.uniform(0, min(self.cap_s, self.base_s * 2 ** min(attempt, 64)))


DEFAULT_BACKOFF = Backoff()


def retry_after_s(response: httpx.Response) -> float | None:
    """The response's Retry-After in seconds, or None (Vigil never sends the HTTP-date form)."""
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None
