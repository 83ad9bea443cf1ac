"""Prometheus's quantile estimators: φ-quantile of samples and of `le` buckets."""

from __future__ import annotations

import math

import numpy as np

from querylang.evaluator.values import Floats


def sort_nan_first(values: Floats) -> Floats:
    """Ascending, NaN first (Go's sort with Prometheus's `Less`)."""
    nan = np.isnan(values)
    return np.concatenate([values[nan], np.sort(values[~nan])])


def quantile_sorted(phi: float, values: Floats) -> float:
    """Prometheus's `quantile` over already sorted values."""
    n = len(values)
    if n == 0 or math.isnan(phi):
        return math.nan
    if phi < 0:
        return -math.inf
    if phi > 1:
        return math.inf
    rank = phi * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return float(values[lower] * (1 - weight) + values[upper] * weight)


def bucket_quantile(phi: float, bounds: Floats, counts: Floats) -> float:
    """Prometheus's `bucketQuantile`: linear interpolation inside the bucket holding
    the rank. `bounds` ascending and unique; the last must be +Inf."""
    if math.isnan(phi):
        return math.nan
    if phi < 0:
        return -math.inf
    if phi > 1:
        return math.inf
    if len(bounds) == 0 or not math.isinf(bounds[-1]) or bounds[-1] < 0:
        return math.nan
    counts = np.maximum.accumulate(counts)  # ensureMonotonic
    if len(bounds) < 2:
        return math.nan
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = phi * observations
    below = np.flatnonzero(counts[:-1] >= rank)
    b = int(below[0]) if len(below) else len(bounds) - 1
    if b == len(bounds) - 1:
        return float(bounds[-2])
    if b == 0 and bounds[0] <= 0:
        return float(bounds[0])
    start = 0.0
    end = float(bounds[b])
    count = float(counts[b])
    if b > 0:
        start = float(bounds[b - 1])
        count -= float(counts[b - 1])
        rank -= float(counts[b - 1])
    with np.errstate(all="ignore"):  # 0/0 is NaN, as in Go
        return float(start + (end - start) * (np.float64(rank) / np.float64(count)))
