"""Where selectors get their samples: the protocol the evaluator reads through, which
the database source (database_source.py) and the in-memory source of the tests implement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from querylang import ast
from querylang.timegrid import TimeGrid
from storage.selections import SelectedColumns, SelectedSeries
from storage.tiers import Tier


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
