"""Any well-typed query evaluates to an answer or a typed QueryError — never a crash —
over a small in-memory data set (the generated trees come from the printer's tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from querylang import ast
from querylang.errors import QueryError
from querylang.evaluator.context import Context
from querylang.evaluator.evaluate import evaluate
from querylang.evaluator.values import STALE_NAN_BITS
from querylang.timegrid import TimeGrid
from storage.selections import SelectedSeries
from tests.querylang.test_printer import _exprs

STEP = 15_000_000
START = 1_700_000_000_000_000


def _series() -> list[SelectedSeries]:
    rng = np.random.default_rng(7)
    times = START - 900_000_000 + np.arange(0, 2_400_000_000, 10_000_000, dtype=np.int64)
    found = []
    for index, le in enumerate(["0.1", "1", "+Inf", ""]):
        values = np.cumsum(rng.random(len(times)) * 5)
        values[17] = np.nan
        values[40:44] = np.array([STALE_NAN_BITS] * 4, dtype=np.uint64).view(np.float64)
        values[90] = 0.0  # a counter reset
        labels = {"host": f"h{index}", **({"le": le} if le else {})}
        found.append(SelectedSeries(f"m{index % 2}", labels, times, values))
    return found


class MemorySource:
    """Every selector finds the same few series (the matchers are not applied)."""

    data = _series()

    def instant(
        self, matchers: tuple[ast.Matcher, ...], grid: TimeGrid, lookback_us: int
    ) -> Sequence[SelectedSeries]:
        return self.data

    def range(
        self, matchers: tuple[ast.Matcher, ...], grid: TimeGrid, range_us: int
    ) -> Sequence[SelectedSeries]:
        return self.data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expr=st.one_of(_exprs(ast.ValueType.VECTOR, 3), _exprs(ast.ValueType.SCALAR, 3)),
    steps=st.sampled_from([1, 7, 40]),
)
def test_well_typed_queries_answer_or_fail_cleanly(expr: ast.Expr, steps: int) -> None:
    grid = TimeGrid(START, STEP if steps > 1 else 0, steps)
    ctx = Context(grid, START, grid.end_us, 300_000_000, MemorySource(), max_steps=100_000)
    with contextlib.suppress(QueryError):
        evaluate(expr, ctx)
