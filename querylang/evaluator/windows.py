"""Range-vector functions (`rate`, `*_over_time`, …) slid over every step's window.

All series' samples are laid end to end in one flat array and each (series, step)
window becomes an index pair [lo, hi) into it, so every function is a handful of
vectorised numpy reductions instead of a Python loop per window. Formulas follow
Prometheus 2.42 (`promql/functions.go`); where it sums sequentially, so does
`ufunc.reduceat`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from querylang.evaluator.values import Floats, Ints, Mask, RangeVector, Vector, drop_name

_EXPANSION_CHUNK = 4_000_000
"""Most window elements materialised at once by the functions that need each
window's samples (quantile, stddev, deriv)."""


@dataclass
class Windows:
    """Every (series, step) window of a range vector as [lo, hi) into flat arrays."""

    times: Ints
    values: Floats
    lo: Ints
    hi: Ints
    ends: Ints
    range_us: int
    series_starts: Ints

    @classmethod
    def of(cls, matrix: RangeVector) -> Windows:
        counts = np.array([len(t) for t in matrix.times], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        steps = len(matrix.window_ends)
        lo = np.empty((len(counts), steps), dtype=np.int64)
        hi = np.empty((len(counts), steps), dtype=np.int64)
        ends = matrix.window_ends
        for row, times in enumerate(matrix.times):
            lo[row] = np.searchsorted(times, ends - matrix.range_us, side="left") + starts[row]
            hi[row] = np.searchsorted(times, ends, side="right") + starts[row]
        flat_times = np.concatenate(matrix.times) if matrix.times else np.empty(0, np.int64)
        flat_values = np.concatenate(matrix.values) if matrix.values else np.empty(0)
        return cls(flat_times, flat_values, lo, hi, ends, matrix.range_us, starts)

    @property
    def count(self) -> Ints:
        return self.hi - self.lo

    def pairwise(self, flag: Callable[[Floats, Floats], Floats]) -> Floats:
        """`flag(previous, current)` for each sample and its predecessor in the same
        series (0 for a series' first sample)."""
        out = np.zeros(len(self.values))
        if len(self.values) > 1:
            out[1:] = flag(self.values[:-1], self.values[1:])
            out[self.series_starts[self.series_starts < len(out)]] = 0.0
        return out

    def reduce(self, ufunc: np.ufunc, data: Floats, mask: Mask, shift: int = 0) -> Floats:
        """`ufunc` over data[lo + shift : hi] of every window where `mask` holds
        (the window must then be non-empty after the shift)."""
        out = np.zeros(self.lo.shape)
        if not mask.any():
            return out
        starts = self.lo[mask] + shift
        stops = self.hi[mask]
        index = np.empty(2 * len(starts), dtype=np.intp)
        index[0::2] = starts
        index[1::2] = stops
        padded = np.append(data, data[:1] if len(data) else [0.0])
        out[mask] = ufunc.reduceat(padded, index)[0::2]
        return out

    def expanded(self, mask: Mask) -> Iterator[tuple[Ints, Ints, Ints]]:
        """Chunks of (window ids into mask's true cells, flat sample positions,
        window sizes): each window's samples spelled out, for per-window formulas."""
        cells = np.flatnonzero(mask)
        lo = self.lo.ravel()[cells]
        sizes = (self.hi.ravel()[cells] - lo).astype(np.int64)
        begin = 0
        while begin < len(cells):
            total = np.cumsum(sizes[begin:])
            end = begin + max(1, int(np.searchsorted(total, _EXPANSION_CHUNK, side="right")))
            chunk_sizes = sizes[begin:end]
            ids = np.repeat(np.arange(begin, end), chunk_sizes)
            offsets = np.arange(chunk_sizes.sum()) - np.repeat(
                np.cumsum(chunk_sizes) - chunk_sizes, chunk_sizes
            )
            yield ids, np.repeat(lo[begin:end], chunk_sizes) + offsets, chunk_sizes
            begin = end


def _vector(matrix: RangeVector, values: Floats, present: Mask, keep_name: bool = False) -> Vector:
    labels = list(matrix.labels) if keep_name else [drop_name(lb) for lb in matrix.labels]
    return Vector(labels, values, present)


def _over_time(name: str) -> Callable[[RangeVector], Vector]:
    def apply(matrix: RangeVector) -> Vector:
        w = Windows.of(matrix)
        n = w.count
        present = n > 0
        if name == "count_over_time":
            values = n.astype(np.float64)
        elif name == "present_over_time":
            values = np.ones(n.shape)
        elif name == "sum_over_time":
            values = w.reduce(np.add, w.values, present)
        elif name == "avg_over_time":
            values = w.reduce(np.add, w.values, present) / np.maximum(n, 1)
        elif name == "min_over_time":
            values = w.reduce(np.fmin, w.values, present)
        elif name == "max_over_time":
            values = w.reduce(np.fmax, w.values, present)
        elif name == "last_over_time":
            values = w.values[(w.hi - 1).clip(0)] if len(w.values) else np.zeros(n.shape)
            return _vector(matrix, values, present, keep_name=True)
        else:
            raise AssertionError(name)
        return _vector(matrix, values, present)

    return apply


def _variance(matrix: RangeVector) -> tuple[Floats, Mask]:
    """Each window's population variance, two-pass over its own samples."""
    w = Windows.of(matrix)
    present = w.count > 0
    result = np.zeros(present.size)
    cells = np.flatnonzero(present)
    for ids, positions, sizes in w.expanded(present):
        samples = w.values[positions]
        first = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        with np.errstate(all="ignore"):
            means = np.add.reduceat(samples, first) / sizes
            deviations = samples - np.repeat(means, sizes)
            squares = np.add.reduceat(deviations * deviations, first)
        result[cells[ids[first]]] = squares / sizes
    return result.reshape(present.shape), present


def stdvar_over_time(matrix: RangeVector) -> Vector:
    values, present = _variance(matrix)
    return _vector(matrix, values, present)


def stddev_over_time(matrix: RangeVector) -> Vector:
    values, present = _variance(matrix)
    return _vector(matrix, np.sqrt(values), present)


def quantile_over_time(phi: Floats, matrix: RangeVector) -> Vector:
    """Prometheus's `quantile`: sort (NaN first), interpolate between neighbours."""
    w = Windows.of(matrix)
    present = w.count > 0
    result = np.zeros(present.size)
    cells = np.flatnonzero(present)
    steps = present.shape[1] if present.ndim == 2 else 1
    for ids, positions, sizes in w.expanded(present):
        samples = w.values[positions]
        order = np.lexsort((samples, ~np.isnan(samples), ids))
        ordered = samples[order]
        first = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        q = phi[cells[ids[first]] % steps]
        rank = q * (sizes - 1)
        # φ outside [0, 1] answers ±Inf below; clip so its (unused) index stays valid.
        lower = np.clip(np.floor(np.nan_to_num(rank)), 0, sizes - 1)
        upper = np.minimum(sizes - 1, lower + 1)
        weight = rank - np.floor(rank)
        value = (
            ordered[first + lower.astype(np.int64)] * (1 - weight)
            + ordered[first + upper.astype(np.int64)] * weight
        )
        value = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, value))
        result[cells[ids[first]]] = np.where(np.isnan(q), np.nan, value)
    return _vector(matrix, result.reshape(present.shape), present)


def _pair_counts(matrix: RangeVector, flag: Callable[[Floats, Floats], Floats]) -> Vector:
    """How many consecutive sample pairs inside each window satisfy `flag(prev, cur)`."""
    w = Windows.of(matrix)
    n = w.count
    counts = w.reduce(np.add, w.pairwise(flag), n > 1, shift=1)
    return _vector(matrix, counts, n > 0)


def changes(matrix: RangeVector) -> Vector:
    return _pair_counts(
        matrix, lambda prev, cur: ((cur != prev) & ~(np.isnan(cur) & np.isnan(prev))) * 1.0
    )


def resets(matrix: RangeVector) -> Vector:
    return _pair_counts(matrix, lambda prev, cur: (cur < prev) * 1.0)


@dataclass(frozen=True)
class Condensed:
    """For a matrix whose points stand for more samples (a rollup's counter stream):
    per point, the counter's own value (the matrix's have earlier resets folded in)
    and how many samples it stands for."""

    values: list[Floats]
    samples: list[Floats]


def extrapolated(
    matrix: RangeVector, counter: bool, per_second: bool, condensed: Condensed | None = None
) -> Vector:
    """Prometheus's `extrapolatedRate` (rate, increase, delta). With `condensed`, the
    first sample's own value and the windows' real sample counts are used where
    Prometheus looks at them (extrapolating no further back than the counter's zero,
    and by the average interval between samples)."""
    with np.errstate(all="ignore"):
        return _extrapolated_rate(matrix, counter, per_second, condensed)


def _extrapolated_rate(
    matrix: RangeVector, counter: bool, per_second: bool, condensed: Condensed | None
) -> Vector:
    w = Windows.of(matrix)
    n = w.count
    present = n >= 2
    first = w.lo.clip(0, max(len(w.values) - 1, 0))
    last = (w.hi - 1).clip(0)
    if not len(w.values):
        return _vector(matrix, np.zeros(n.shape), present)
    first_v, last_v = w.values[first], w.values[last]
    result = last_v - first_v
    if counter:
        corrections = w.pairwise(lambda prev, cur: np.where(cur < prev, prev, 0.0))
        result = result + w.reduce(np.add, corrections, present, shift=1)
    # Differences of integer µs before dividing: epoch seconds as floats would lose
    # ~1e-7 s, a 1e-8 relative error on a 30 s window.
    ends = np.broadcast_to(w.ends, n.shape)
    range_s = w.range_us / 1e6
    to_start = (w.times[first] - (ends - w.range_us)) / 1e6
    to_end = (ends - w.times[last]) / 1e6
    sampled = (w.times[last] - w.times[first]) / 1e6
    samples = n
    if condensed is not None:
        first_v = np.concatenate(condensed.values)[first]
        samples = w.reduce(np.add, np.concatenate(condensed.samples), present)
    with np.errstate(divide="ignore", invalid="ignore"):
        average = sampled / np.maximum(samples - 1, 1)
        if counter:
            to_zero = sampled * (first_v / result)
            use_zero = (result > 0) & (first_v >= 0) & (to_zero < to_start)
            to_start = np.where(use_zero, to_zero, to_start)
        threshold = average * 1.1
        interval = (
            sampled
            + np.where(to_start < threshold, to_start, average / 2)
            + np.where(to_end < threshold, to_end, average / 2)
        )
        result = result * (interval / sampled)
    if per_second:
        result = result / range_s
    return _vector(matrix, result, present)


def _instant_delta(matrix: RangeVector, per_second: bool) -> Vector:
    """Prometheus's `instantValue` (irate, idelta): the last two samples."""
    with np.errstate(all="ignore"):
        return _last_two(matrix, per_second)


def _last_two(matrix: RangeVector, per_second: bool) -> Vector:
    w = Windows.of(matrix)
    present = w.count >= 2
    if not len(w.values):
        return _vector(matrix, np.zeros(present.shape), present)
    last = (w.hi - 1).clip(0)
    prev = (w.hi - 2).clip(0)
    last_v, prev_v = w.values[last], w.values[prev]
    result = last_v - prev_v
    interval = (w.times[last] - w.times[prev]) / 1e6
    if per_second:
        result = np.where(last_v < prev_v, last_v, result)
        present &= interval != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            result = result / interval
    return _vector(matrix, result, present)


def _regression(matrix: RangeVector, at_end: bool) -> tuple[Floats, Floats, Mask]:
    """Per window, Prometheus's `linearRegression` slope and intercept, with x in
    seconds from the window's first sample (deriv) or from its end (predict_linear)."""
    w = Windows.of(matrix)
    present = w.count >= 2
    slope = np.zeros(present.size)
    intercept = np.zeros(present.size)
    cells = np.flatnonzero(present)
    with np.errstate(all="ignore"):
        _fit(w, present, cells, at_end, slope, intercept)
    return slope.reshape(present.shape), intercept.reshape(present.shape), present


def _fit(
    w: Windows, present: Mask, cells: Ints, at_end: bool, slope: Floats, intercept: Floats
) -> None:
    """Fill `slope` and `intercept` for the windows at `cells`."""
    ends = np.broadcast_to(w.ends, present.shape).ravel()
    for ids, positions, sizes in w.expanded(present):
        first = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        window = cells[ids[first]]
        origin = ends[window] if at_end else w.times[positions[first]]
        x = (w.times[positions] - np.repeat(origin, sizes)) / 1e6
        y = w.values[positions]
        n = sizes.astype(np.float64)
        sum_x = np.add.reduceat(x, first)
        sum_y = np.add.reduceat(y, first)
        sum_xy = np.add.reduceat(x * y, first)
        sum_x2 = np.add.reduceat(x * x, first)
        init = y[first]
        constant = np.add.reduceat((y != np.repeat(init, sizes)).astype(np.int64), first) == 0
        cov = sum_xy - sum_x * sum_y / n
        var = sum_x2 - sum_x * sum_x / n
        s = cov / var
        i = sum_y / n - s * sum_x / n
        infinite = np.isinf(init)
        slope[window] = np.where(constant, np.where(infinite, np.nan, 0.0), s)
        intercept[window] = np.where(constant, np.where(infinite, np.nan, init), i)


def deriv(matrix: RangeVector) -> Vector:
    slope, _, present = _regression(matrix, at_end=False)
    return _vector(matrix, slope, present)


def predict_linear(matrix: RangeVector, seconds: Floats) -> Vector:
    slope, intercept, present = _regression(matrix, at_end=True)
    with np.errstate(all="ignore"):  # 0 x Inf is NaN, as in Go
        predicted = intercept + slope * seconds
    return _vector(matrix, predicted, present)


def absent_over_time(matrix: RangeVector) -> Mask:
    """Steps at which no series has a sample in its window."""
    if not matrix.labels:
        return np.ones(len(matrix.window_ends), dtype=bool)
    return np.asarray(~(Windows.of(matrix).count > 0).any(axis=0))


RANGE_FUNCTIONS: dict[str, Callable[[RangeVector], Vector]] = {
    **{
        name: _over_time(name)
        for name in (
            "count_over_time",
            "present_over_time",
            "sum_over_time",
            "avg_over_time",
            "min_over_time",
            "max_over_time",
            "last_over_time",
        )
    },
    "stddev_over_time": stddev_over_time,
    "stdvar_over_time": stdvar_over_time,
    "changes": changes,
    "resets": resets,
    "rate": lambda m: extrapolated(m, counter=True, per_second=True),
    "increase": lambda m: extrapolated(m, counter=True, per_second=False),
    "delta": lambda m: extrapolated(m, counter=False, per_second=False),
    "irate": lambda m: _instant_delta(m, per_second=True),
    "idelta": lambda m: _instant_delta(m, per_second=False),
    "deriv": deriv,
}
"""The one-argument range functions; `quantile_over_time`, `predict_linear` and
`absent_over_time` take more and are dispatched in `calls`."""
