"""PromQL on a rollup tier: which bucket columns answer which function.

A tier bucket holds one series' samples in (end - width, end] (sql/0006_rollups.sql).
Each function reads its columns as a *stream* of points and then runs the same
window code as on raw samples (windows.py), the way Thanos answers functions from
its downsampled aggregates:

| PromQL                         | stream: point time → value                          |
|--------------------------------|-----------------------------------------------------|
| instant selector `x`           | last_time → last_value                              |
| `last_over_time`               | last_time → last_value                              |
| `sum_over_time`                | bucket middle → sum                                 |
| `count_over_time`              | bucket middle → samples, summed                     |
| `avg_over_time`                | Σ sum / Σ samples over the window                   |
| `min_over_time`/`max_over_time`| bucket middle → min / max                           |
| `present_over_time`            | bucket middle → samples                             |
| `rate` / `increase`            | first_time, last_time → the counter, made monotonic |

Exactness: a window (t - r, t] whose ends fall on bucket ends is exactly the buckets
whose middle lies inside it, so sum/count/avg/min/max_over_time equal the raw answer
over Prometheus 3's left-open window (2.42's closed [t - r, t] also takes a sample
sitting exactly on t - r). The counter stream holds every bucket's first and last
sample with the resets before them folded in (reset_correction, and a drop across
a bucket edge), so the increase between a window's first and last sample is exact;
extrapolation to the window edges uses the first sample's own value and the window's
real sample count, as on raw samples; it differs only where a window edge cuts a
bucket (the bucket's samples count wholly inside or outside). Quantiles from `le` buckets
(`histogram_quantile` over `rate` of `_bucket` counters) inherit exactly that.
Instant selectors look back max(lookback, width), as a bucket's last sample may
be up to a width old at its end. Windows shorter than a bucket are widened to one
bucket; the planner says so, and every other approximation, in the response.
Other range functions (and subqueries, `@`) are answered from raw samples only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from querylang import ast
from querylang.evaluator import windows
from querylang.evaluator.context import Context
from querylang.evaluator.values import Floats, Ints, Labels, RangeVector, Vector, labels_of
from querylang.tier_functions import COUNTER_COLUMNS, MIDDLE_STREAMS
from storage.selections import SelectedColumns, SelectedSeries
from storage.tiers import Tier


def instant_points(
    matchers: tuple[ast.Matcher, ...], tier: Tier, low_us: int, high_us: int, ctx: Context
) -> list[SelectedSeries]:
    """Each series' bucket-last samples around [low, high], for the instant selector
    code to pick the latest at or before every step."""
    found = ctx.source.rollup(
        matchers, tier, ("last_time", "last_value"), low_us - tier.width_us, high_us + tier.width_us
    )
    return [SelectedSeries(s.metric, s.labels, s.columns[1], s.columns[2]) for s in found]


def range_function(call: ast.Call, ctx: Context, window_ends: np.ndarray) -> Vector:
    """`call` (a range function of a matrix selector) evaluated on ctx's tier."""
    tier = ctx.tier
    assert tier is not None
    selector = call.args[0]
    assert isinstance(selector, ast.MatrixSelector)
    range_us = max(selector.range_us, tier.width_us)  # at least one bucket
    low = int(window_ends.min()) - range_us - tier.width_us if len(window_ends) else 0
    high = int(window_ends.max()) + tier.width_us if len(window_ends) else 0
    matchers = selector.vector.matchers

    def fetch(columns: tuple[str, ...]) -> tuple[list[Labels], Sequence[SelectedColumns]]:
        found = ctx.source.rollup(matchers, tier, columns, low, high)
        return [labels_of(series.metric, series.labels.items()) for series in found], found

    def matrix(labels: list[Labels], points: Iterable[tuple[Floats, Floats]]) -> RangeVector:
        times, values = zip(*points, strict=True) if labels else ((), ())
        return RangeVector(labels, list(times), list(values), window_ends, range_us)

    func = call.func
    if func in MIDDLE_STREAMS:
        column, raw = MIDDLE_STREAMS[func]
        labels, found = fetch((column,))
        points = ((_middle(tier, series), series.columns[1]) for series in found)
        return windows.RANGE_FUNCTIONS[raw](matrix(labels, points))
    if func == "avg_over_time":
        labels, found = fetch(("sum", "samples"))
        middles = [_middle(tier, series) for series in found]
        summed = windows.RANGE_FUNCTIONS["sum_over_time"]
        total = summed(matrix(labels, zip(middles, (s.columns[1] for s in found), strict=True)))
        count = summed(matrix(labels, zip(middles, (s.columns[2] for s in found), strict=True)))
        values = total.values / np.where(count.present, count.values, 1.0)
        return Vector(total.labels, values, total.present)
    if func == "last_over_time":
        labels, found = fetch(("last_time", "last_value"))
        points = ((series.columns[1], series.columns[2]) for series in found)
        return windows.RANGE_FUNCTIONS[func](matrix(labels, points))
    if func in ("rate", "increase"):
        labels, found = fetch(COUNTER_COLUMNS)
        streams = [_counter(series) for series in found]
        counters = matrix(labels, ((times, values) for times, values, _, _ in streams))
        condensed = windows.Condensed(
            [own for _, _, own, _ in streams], [samples for _, _, _, samples in streams]
        )
        return windows.extrapolated(counters, True, func == "rate", condensed)
    raise AssertionError(f"{func} is not answered from rollups")


def _middle(tier: Tier, series: SelectedColumns) -> Ints:
    """Bucket middles: inside an aligned window exactly when the bucket is."""
    return series.columns[0] - tier.width_us // 2


def _counter(series: SelectedColumns) -> tuple[Ints, Floats, Floats, Floats]:
    """Each bucket's first and last sample, offset by every reset before them, so
    the stream never drops and its differences are the counter's increases; the
    samples' own values; and how many samples each point stands for (the last point
    of a bucket: all but its first)."""
    _, first_time, first, last_time, last, correction, samples = series.columns
    dropped = np.zeros(len(first))
    if len(first) > 1:
        previous = last[:-1]
        # Go's comparison: false whenever NaN is involved.
        resets = (first[1:] < previous) & ~np.isnan(previous) & ~np.isnan(first[1:])
        dropped[1:] = np.where(resets, previous, 0.0)
    before = np.cumsum(dropped + np.concatenate(([0.0], correction[:-1])))
    times = np.stack([first_time, last_time], axis=1).ravel()
    values = np.stack([first + before, last + before + correction], axis=1).ravel()
    own = np.stack([first, last], axis=1).ravel()
    stands_for = np.stack([np.ones(len(samples)), samples - 1], axis=1).ravel()
    keep = np.ones(len(times), dtype=bool)
    keep[1::2] = last_time != first_time  # one-sample buckets: one point
    return times[keep], values[keep], own[keep], stands_for[keep]
