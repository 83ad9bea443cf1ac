"""What one query may use before it fails with a clear error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class QueryLimits:
    """What one query may use before it fails with a clear error."""

    timeout: timedelta = timedelta(seconds=30)
    max_series: int = 50_000
    max_points: int = 11_000
    max_samples: int = 50_000_000
    lookback: timedelta = timedelta(minutes=5)

    @property
    def lookback_us(self) -> int:
        return self.lookback // timedelta(microseconds=1)

    def timeout_message(self) -> str:
        """What a query that ran out of time is told."""
        return f"query timed out after {self.timeout.total_seconds():g} s"
