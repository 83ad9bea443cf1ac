"""The storage tiers, finest first: raw samples, then the 1m, 1h and 1d rollups.

This is the one registry of tiers: retention, the rollup engine, the planner, the
results cache and the Dagster jobs all name tiers through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeVar

import numpy as np
import numpy.typing as npt

MINUTE_US: Final = 60_000_000

_Times = TypeVar("_Times", int, npt.NDArray[np.int64])

TierName = Literal["raw", "1m", "1h", "1d"]
RollupTierName = Literal["1m", "1h", "1d"]


@dataclass(frozen=True)
class Tier:
    """A storage tier: its name, bucket width (0 for raw samples), and the tier it is
    built from (None for raw samples themselves)."""

    name: str
    width_us: int
    source: str | None

    @property
    def is_raw(self) -> bool:
        return self.width_us == 0

    @property
    def table(self) -> str:
        """The hypertable the tier is written to."""
        return "samples_raw" if self.is_raw else f"rollup_{self.name}"

    @property
    def view(self) -> str:
        """The relation readers use (it may add retained rows to the table's)."""
        return "samples" if self.is_raw else f"rollups_{self.name}"

    def bucket_end(self, time_us: _Times) -> _Times:
        """The end of the bucket (end - width, end] holding `time_us` (or each time)."""
        return -(-time_us // self.width_us) * self.width_us

    def floor(self, time_us: int) -> int:
        """The latest bucket end at or before `time_us`."""
        return time_us // self.width_us * self.width_us


RAW: Final = Tier("raw", 0, None)

ROLLUP_TIERS: Final[dict[str, Tier]] = {
    "1m": Tier("1m", MINUTE_US, "raw"),
    "1h": Tier("1h", 60 * MINUTE_US, "1m"),
    "1d": Tier("1d", 24 * 60 * MINUTE_US, "1h"),
}
"""Finest first: each rollup tier is built from the one before it (1m from raw)."""

TIERS: Final[dict[str, Tier]] = {"raw": RAW, **ROLLUP_TIERS}
"""Every tier, finest first."""

TIER_NAMES: Final[tuple[TierName, ...]] = ("raw", "1m", "1h", "1d")
ROLLUP_TIER_NAMES: Final[tuple[RollupTierName, ...]] = ("1m", "1h", "1d")
