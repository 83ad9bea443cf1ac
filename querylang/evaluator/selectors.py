"""Selectors and subqueries: turning stored samples into vectors and range vectors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from querylang import ast
from querylang.errors import QueryLimitExceeded
from querylang.evaluator import tiers
from querylang.evaluator.context import DEFAULT_SUBQUERY_STEP_US, Context
from querylang.evaluator.values import RangeVector, Value, Vector, is_stale, labels_of
from querylang.timegrid import TimeGrid


def instant(selector: ast.VectorSelector, ctx: Context) -> Vector:
    """Each series' latest sample at or before every step, within the lookback
    ([t - lookback, t], Prometheus 2.x), unless that sample is a stale marker."""
    grid = ctx.effective_grid(selector.offset_us, selector.at)
    if ctx.tier is None:
        found = ctx.source.instant(selector.matchers, grid, ctx.lookback_us)
    else:
        low = grid.start_us - ctx.lookback_us
        found = tiers.instant_points(selector.matchers, ctx.tier, low, grid.end_us, ctx)
    ends = grid.times_us
    count = len(found)
    values = np.zeros((count, grid.count))
    present = np.zeros((count, grid.count), dtype=bool)
    sample_times = np.zeros((count, grid.count), dtype=np.int64)
    labels = []
    for row, series in enumerate(found):
        labels.append(labels_of(series.metric, series.labels.items()))
        index = np.searchsorted(series.times_us, ends, side="right") - 1
        has = index >= 0
        index = index.clip(0)
        times = series.times_us[index]
        picked = series.values[index]
        present[row] = has & (ends - times <= ctx.lookback_us) & ~is_stale(picked)
        values[row] = picked
        sample_times[row] = times
    if grid.count != ctx.steps:  # pinned by `@`: the same answer at every step
        values = np.repeat(values, ctx.steps, axis=1)
        present = np.repeat(present, ctx.steps, axis=1)
        sample_times = np.repeat(sample_times, ctx.steps, axis=1)
    return Vector(labels, values, present, sample_times)


def range_of(selector: ast.MatrixSelector, ctx: Context) -> RangeVector:
    """Each series' samples in every window [E - range, E], stale markers dropped."""
    vector = selector.vector
    grid = ctx.effective_grid(vector.offset_us, vector.at)
    found = ctx.source.range(vector.matchers, grid, selector.range_us)
    labels, times, values = [], [], []
    for series in found:
        fresh = ~is_stale(series.values)
        labels.append(labels_of(series.metric, series.labels.items()))
        times.append(series.times_us[fresh])
        values.append(series.values[fresh])
    return RangeVector(labels, times, values, window_ends(grid, ctx), selector.range_us)


def subquery(
    node: ast.Subquery, ctx: Context, evaluate: Callable[[ast.Expr, Context], Value]
) -> RangeVector:
    """The inner expression evaluated at multiples of the subquery step covering
    every window, its points then treated as samples (Prometheus's alignment)."""
    grid = ctx.effective_grid(node.offset_us, node.at)
    step = node.step_us or DEFAULT_SUBQUERY_STEP_US
    low = grid.start_us - node.range_us
    first = -(-low // step) * step
    count = max(0, (grid.end_us - first) // step + 1)
    if count > ctx.max_steps:
        raise QueryLimitExceeded(
            f"subquery would evaluate {count} steps, more than the limit of {ctx.max_steps}; "
            "use a coarser subquery step"
        )
    if count == 0:
        return RangeVector([], [], [], window_ends(grid, ctx), node.range_us)
    inner_times = first + step * np.arange(count, dtype=np.int64)
    inner = evaluate(node.expr, ctx.on(TimeGrid(first, step, count)))
    assert isinstance(inner, Vector)
    times = [inner_times[row] for row in inner.present]
    values = [inner.values[row][inner.present[row]] for row in range(len(inner.labels))]
    return RangeVector(list(inner.labels), times, values, window_ends(grid, ctx), node.range_us)


def window_ends(grid: TimeGrid, ctx: Context) -> np.ndarray:
    """Per step of ctx, the end of the window a selector on `grid` reads."""
    ends = grid.times_us
    return np.repeat(ends, ctx.steps) if grid.count != ctx.steps else ends
