"""Any well-typed query evaluates to an answer or a typed QueryError — never a crash —
over a small in-memory data set (the generated trees come from the printer's tests).

How many examples run, and whether seeds are random, is the Hypothesis profile's
business (tests/conftest.py): `make test` is deterministic, `make fuzz` searches.
Every failing example a search ever found is pinned below with `@example`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from querylang import ast
from querylang.errors import QueryError
from querylang.evaluator.context import Context
from querylang.evaluator.evaluate import evaluate
from querylang.evaluator.values import METRIC_NAME, STALE_NAN_BITS, Scalar, Value, Vector
from querylang.parser import parse
from querylang.regex import anchored
from querylang.timegrid import TimeGrid
from storage.selections import SelectedSeries
from tests.querylang.test_printer import _exprs

STEP = 15_000_000
START = 1_700_000_000_000_000


def _series() -> list[SelectedSeries]:
    """Four of the metric names the generated selectors use (`on_fire`, `sum` and
    `Inf` match nothing), a histogram's `le` buckets, and a series that starts late.
    Times are relative to the first time a selector reads."""
    rng = np.random.default_rng(7)
    times = np.arange(-900_000_000, 1_500_000_000, 10_000_000, dtype=np.int64)
    shapes: list[tuple[str, dict[str, str]]] = [
        ("up", {"job": "a", "host": "h0"}),
        ("up", {"job": "b", "host": "h1"}),
        ("bool", {"job": "500"}),
        ("job:rate:5m", {"job": "a"}),
        ("sum_total", {"job": "b", "le": "0.1"}),
        ("sum_total", {"job": "b", "le": "1"}),
        ("sum_total", {"job": "b", "le": "+Inf"}),
    ]
    found = []
    for index, (metric, labels) in enumerate(shapes):
        values = np.cumsum(rng.random(len(times)) * 5)
        values[17] = np.nan
        values[40:44] = np.array([STALE_NAN_BITS] * 4, dtype=np.uint64).view(np.float64)
        values[90] = 0.0  # a counter reset
        first = 110 if index == 1 else 0  # 200 s after the first time read
        found.append(SelectedSeries(metric, labels, times[first:], values[first:]))
    return found


def _matches(series: SelectedSeries, matcher: ast.Matcher) -> bool:
    """Prometheus's matcher semantics: a missing label has the value ""."""
    value = series.metric if matcher.name == METRIC_NAME else series.labels.get(matcher.name, "")
    match matcher.op:
        case ast.MatchOp.EQ:
            return value == matcher.value
        case ast.MatchOp.NE:
            return value != matcher.value
        case ast.MatchOp.RE:
            return anchored(matcher.value).match(value) is not None
        case ast.MatchOp.NRE:
            return anchored(matcher.value).match(value) is None


class MemorySource:
    """The series above, around the first time a selector reads wherever `offset`
    and `@` move it (the generated times are random). `filtered`: only the series
    a selector's matchers select, so that most find nothing (the empty inputs every
    operator must handle); else all of them, whatever the matchers."""

    data = _series()

    def __init__(self, filtered: bool = True) -> None:
        self.filtered = filtered

    def select(self, matchers: tuple[ast.Matcher, ...], start_us: int) -> list[SelectedSeries]:
        return [
            SelectedSeries(s.metric, s.labels, s.times_us + start_us, s.values)
            for s in self.data
            if not self.filtered or all(_matches(s, matcher) for matcher in matchers)
        ]

    def instant(
        self, matchers: tuple[ast.Matcher, ...], grid: TimeGrid, lookback_us: int
    ) -> Sequence[SelectedSeries]:
        return self.select(matchers, grid.start_us)

    def range(
        self, matchers: tuple[ast.Matcher, ...], grid: TimeGrid, range_us: int
    ) -> Sequence[SelectedSeries]:
        return self.select(matchers, grid.start_us)


def well_formed(value: Value, steps: int) -> bool:
    """Vectors hold float64 values and a bool mask, both (series, steps); scalars one
    float64 per step."""
    if isinstance(value, Scalar):
        return value.values.dtype == np.float64 and value.values.shape == (steps,)
    if isinstance(value, Vector):
        shape = (len(value.labels), steps)
        return (
            value.values.dtype == np.float64
            and value.present.dtype == np.bool_
            and value.values.shape == shape
            and value.present.shape == shape
        )
    return True


def evaluated(expr: ast.Expr, steps: int, filtered: bool = True) -> Value:
    """`expr` over `steps` steps of STEP from START, on the MemorySource."""
    grid = TimeGrid(START, STEP if steps > 1 else 0, steps)
    source = MemorySource(filtered)
    ctx = Context(grid, START, grid.end_us, 300_000_000, source, max_steps=100_000)
    return evaluate(expr, ctx)


def _pin(query: str, steps: int) -> example:
    """An example that once failed, with the selectors' matchers applied."""
    return example(expr=parse(query), steps=steps, filtered=True)


# Each of these once failed. The crash (CI's random run) and its kin, found
# while auditing its cause (a float or 1-D presence mask of an empty vector):
@_pin('count_values("A", nonexistent) == 0', steps=1)
@_pin('count_values("A", nonexistent) == 0', steps=7)
@_pin("up or nonexistent", steps=7)
@_pin("nonexistent and up", steps=1)
@_pin("nonexistent unless up", steps=1)
@_pin('absent(count_values("A", nonexistent))', steps=1)
@_pin('max_over_time(count_values("A", nonexistent)[5m:1m])', steps=7)
# Found by searching the evaluator before the fix, with selectors that can match
# nothing (the same cause: crashes in `&`/`|` and malformed answers):
@_pin('{job="0"} and {job="0"}', steps=1)
@_pin('{job="0"} and up', steps=1)
@_pin('on_fire and {job="0"}', steps=1)
@_pin('0 == 0 + ({job="0"} and {job="0"})', steps=1)
@_pin('abs(-({job="0"} and {job="0"}))', steps=1)
@_pin('0 + (up or {job="0"}) and {job="0"}', steps=1)
@_pin('{job="0"} and 0 + (up or {job="0"})', steps=1)
@_pin('{job="0"} and 0 == count_values("A", on_fire)', steps=1)
# numpy's RuntimeWarnings on overflow and Inf x 0, which searching logged (one per site):
@_pin("scalar(up * 0 + 1e308)", steps=40)
@_pin("sum_over_time((up * 0 + 1e308)[5m:1m])", steps=1)
@_pin("quantile_over_time(0.5, (up * 0 + Inf)[5m:1m])", steps=1)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expr=st.one_of(_exprs(ast.ValueType.VECTOR, 3), _exprs(ast.ValueType.SCALAR, 3)),
    steps=st.sampled_from([1, 7, 40]),
    filtered=st.booleans(),
)
def test_well_typed_queries_answer_or_fail_cleanly(
    expr: ast.Expr, steps: int, filtered: bool
) -> None:
    with warnings.catch_warnings(), contextlib.suppress(QueryError):
        warnings.simplefilter("error", RuntimeWarning)  # numpy's, on Inf and NaN: noise
        assert well_formed(evaluated(expr, steps, filtered), steps)
