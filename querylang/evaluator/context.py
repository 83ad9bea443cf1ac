"""What an evaluation needs besides the expression: its time grid and its data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from querylang import ast
from querylang.compiler import TimeGrid
from querylang.evaluator.values import Ints
from storage.rollups import Tier
from storage.selections import SelectedColumns, SelectedSeries

DEFAULT_SUBQUERY_STEP_US = 60_000_000
"""Prometheus's default evaluation interval, the step of `expr[range:]`."""


class SampleSource(Protocol):
    """Where selectors get their series from (the database, in production)."""

    def instant(
        self, matchers: tuple[ast.Matcher, ...], grid: TimeGrid, lookback_us: int
    ) -> Sequence[SelectedSeries]:
        """Per series, at least the latest sample at or before each grid time within
        the lookback (more samples are harmless)."""
        ...

    def range(
        self, matchers: tuple[ast.Matcher, ...], grid: TimeGrid, range_us: int
    ) -> Sequence[SelectedSeries]:
        """Per series, every sample in [grid start - range, grid end]."""
        ...

    def rollup(
        self,
        matchers: tuple[ast.Matcher, ...],
        tier: Tier,
        columns: tuple[str, ...],
        low_us: int,
        high_us: int,
    ) -> Sequence[SelectedColumns]:
        """Per series, the bucket end and `columns` of every `tier` bucket ending in
        (low, high], in bucket order."""
        ...


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
