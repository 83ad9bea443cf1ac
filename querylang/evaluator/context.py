"""What an evaluation needs besides the expression: its time grid and its data."""

from __future__ import annotations

from dataclasses import dataclass, replace

from querylang import ast
from querylang.evaluator.values import Ints
from querylang.sample_source import SampleSource
from querylang.timegrid import TimeGrid
from storage.tiers import Tier

DEFAULT_SUBQUERY_STEP_US = 60_000_000
"""Prometheus's default evaluation interval, the step of `expr[range:]`."""


@dataclass(frozen=True)
class Context:
    """One evaluation: the grid of step times, the query's own start and end (for
    `@ start()` / `@ end()`), the lookback, the sample source and the tier it reads."""

    grid: TimeGrid
    query_start_us: int
    query_end_us: int
    lookback_us: int
    source: SampleSource
    max_steps: int = 1_000_000
    """Most steps any grid (a subquery's included) may have."""
    tier: Tier | None = None
    """The rollup tier selectors read (None: raw samples)."""

    @property
    def times(self) -> Ints:
        return self.grid.times_us

    @property
    def steps(self) -> int:
        return self.grid.count

    def on(self, grid: TimeGrid) -> Context:
        """The same evaluation on another grid (a subquery's)."""
        return replace(self, grid=grid)

    def effective_grid(self, offset_us: int, at: ast.AtModifier | None) -> TimeGrid:
        """The times a selector or subquery reads at: its `@` time (once) or the
        grid, moved back by its offset."""
        if at is None:
            return TimeGrid(self.grid.start_us - offset_us, self.grid.step_us, self.grid.count)
        pinned = {
            "time": at.time_us,
            "start": self.query_start_us,
            "end": self.query_end_us,
        }[at.kind]
        return TimeGrid(pinned - offset_us, 0, 1)
