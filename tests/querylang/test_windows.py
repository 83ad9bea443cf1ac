"""The vectorised range functions equal a plain, loop-per-window port of
Prometheus 2.42's `promql/functions.go` on random series and windows."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from querylang.evaluator import windows
from querylang.evaluator.values import RangeVector


def _rate(points: list[tuple[int, float]], end: int, rng: int, counter: bool, per_s: bool):
    if len(points) < 2:
        return None
    result = points[-1][1] - points[0][1]
    if counter:
        last = 0.0
        for _, v in points:
            if v < last:
                result += last
            last = v
    start = end - rng
    to_start = (points[0][0] - start) / 1e6
    to_end = (end - points[-1][0]) / 1e6
    sampled = (points[-1][0] - points[0][0]) / 1e6
    average = sampled / (len(points) - 1)
    if counter and result > 0 and points[0][1] >= 0:
        to_zero = sampled * (points[0][1] / result)
        if to_zero < to_start:
            to_start = to_zero
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    result = result * (interval / sampled)
    return result / (rng / 1e6) if per_s else result


def _irate(points, per_s):
    if len(points) < 2:
        return None
    (t0, v0), (t1, v1) = points[-2], points[-1]
    result = v1 - v0
    if per_s and v1 < v0:
        result = v1
    interval = (t1 - t0) / 1e6
    if per_s:
        if interval == 0:
            return None
        result /= interval
    return result


def _regression(points, intercept_time):
    n = sx = sy = sxy = sx2 = 0.0
    init = points[0][1]
    constant = all(v == init for _, v in points[1:])
    for t, v in points:
        x = (t - intercept_time) / 1e6
        n += 1
        sx += x
        sy += v
        sxy += x * v
        sx2 += x * x
    if constant:
        return (math.nan, math.nan) if math.isinf(init) else (0.0, init)
    cov = sxy - sx * sy / n
    var = sx2 - sx * sx / n
    slope = cov / var
    return slope, sy / n - slope * sx / n


def _reference(name: str, points, end: int, rng: int):
    values = [v for _, v in points]
    if not points:
        return None
    match name:
        case "rate" | "increase" | "delta":
            return _rate(points, end, rng, name != "delta", name == "rate")
        case "irate" | "idelta":
            return _irate(points, name == "irate")
        case "deriv":
            return _regression(points, points[0][0])[0] if len(points) > 1 else None
        case "count_over_time":
            return float(len(points))
        case "sum_over_time":
            return math.fsum(values) if all(math.isfinite(v) for v in values) else sum(values)
        case "avg_over_time":
            return sum(values) / len(values)
        case "max_over_time":
            best = values[0]
            for v in values:
                if v > best or math.isnan(best):
                    best = v
            return best
        case "min_over_time":
            best = values[0]
            for v in values:
                if v < best or math.isnan(best):
                    best = v
            return best
        case "last_over_time":
            return values[-1]
        case "present_over_time":
            return 1.0
        case "changes":
            return float(
                sum(
                    1
                    for a, b in itertools.pairwise(values)
                    if b != a and not (math.isnan(a) and math.isnan(b))
                )
            )
        case "resets":
            return float(sum(1 for a, b in itertools.pairwise(values) if b < a))
        case "stdvar_over_time":
            mean = sum(values) / len(values)
            return sum((v - mean) ** 2 for v in values) / len(values)
    raise AssertionError(name)


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b)) + 1e-12


series_strategy = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=40_000_000),  # gap to the previous sample, µs
        st.one_of(
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
            st.sampled_from([0.0, 1.0, 5.0, math.nan, math.inf]),
        ),
    ),
    max_size=40,
)


@pytest.mark.parametrize("name", sorted(windows.RANGE_FUNCTIONS))
# A fraction of the profile's examples (tests/conftest.py), for each function.
@settings(max_examples=settings.default.max_examples // 15, deadline=None)
@given(
    data=st.lists(series_strategy, min_size=1, max_size=3),
    range_s=st.sampled_from([10, 30, 60, 95]),
    step_s=st.sampled_from([5, 15, 60]),
)
def test_range_functions_match_a_loop_per_window(name, data, range_s, step_s) -> None:
    if name == "stddev_over_time":
        name = "stdvar_over_time"  # the same variance, checked before its square root
    times, values = [], []
    for gaps in data:
        t = np.cumsum([g for g, _ in gaps]).astype(np.int64) + 1_000_000_000
        times.append(t)
        values.append(np.array([v for _, v in gaps], dtype=np.float64))
    ends = 1_000_000_000 + np.arange(0, 600_000_000, step_s * 1_000_000, dtype=np.int64)
    labels = [(("__name__", "m"), ("i", str(i))) for i in range(len(data))]
    matrix = RangeVector(labels, times, values, ends, range_s * 1_000_000)
    function = windows.RANGE_FUNCTIONS[name]
    result = function(matrix)
    for row in range(len(data)):
        for step, end in enumerate(ends):
            inside = (times[row] >= end - matrix.range_us) & (times[row] <= end)
            points = list(
                zip(times[row][inside].tolist(), values[row][inside].tolist(), strict=True)
            )
            expected = _reference(name, points, int(end), matrix.range_us)
            if expected is None:
                assert not result.present[row, step], (name, points)
                continue
            assert result.present[row, step], (name, points)
            got = float(result.values[row, step])
            if name in ("sum_over_time", "avg_over_time", "stdvar_over_time", "deriv"):
                # Summation order differs from Prometheus's loop; compare loosely on
                # cancelling inputs, exactly elsewhere.
                assert _close(got, expected) or abs(got - expected) < 1e-6 * max(
                    1.0, *(abs(v) for _, v in points if math.isfinite(v))
                ), (name, points, got, expected)
            else:
                assert _close(got, expected), (name, points, got, expected)
