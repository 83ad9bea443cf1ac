"""The values an expression evaluates to, over every step of the evaluation grid.

A range query is evaluated for all steps at once: an instant vector is a matrix
of series x steps with a presence mask (NaN is a legitimate PromQL value, so
absence needs its own mask), a scalar is one value per step, and a range vector
keeps each series' samples plus, per step, the end of the window to slide over.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from querylang.errors import EvaluationError
from querylang.result import Labels

__all__ = ["Labels"]

# numpy's dtype-level types do not survive its own operators under mypy; the
# aliases name intent (float values, int64 times, boolean masks) instead.
Floats = npt.NDArray[Any]
Ints = npt.NDArray[Any]
Mask = npt.NDArray[Any]

METRIC_NAME = "__name__"
STALE_NAN_BITS = 0x7FF0000000000002


def labels_of(metric: str, labels: Iterable[tuple[str, str]]) -> Labels:
    """A sorted label set with the metric name as `__name__`."""
    return tuple(sorted([(METRIC_NAME, metric), *labels]))


def drop_name(labels: Labels) -> Labels:
    return tuple(pair for pair in labels if pair[0] != METRIC_NAME)


def label_value(labels: Labels, name: str) -> str:
    for key, value in labels:
        if key == name:
            return value
    return ""


def with_label(labels: Labels, name: str, value: str) -> Labels:
    """`labels` with `name` set to `value`; an empty value removes the label."""
    kept = [pair for pair in labels if pair[0] != name]
    if value:
        kept.append((name, value))
    return tuple(sorted(kept))


def is_stale(values: Floats) -> Mask:
    """Which values are Prometheus stale markers (one specific NaN bit pattern)."""
    return values.view(np.uint64) == np.uint64(STALE_NAN_BITS)


def _check(name: str, array: npt.NDArray[Any], dtype: type, shape: tuple[int | None, ...]) -> None:
    """Raise if `array` is not of `dtype` and `shape` (None: any length there)."""
    fits = array.ndim == len(shape) and all(
        want is None or have == want for have, want in zip(array.shape, shape, strict=True)
    )
    if array.dtype != dtype or not fits:
        wanted = ", ".join("n" if want is None else str(want) for want in shape)
        raise TypeError(
            f"{name} must be {np.dtype(dtype).name} of shape ({wanted}), "
            f"not {array.dtype.name} of shape {array.shape}"
        )


def stacked(rows: Sequence[npt.NDArray[Any]], steps: int, dtype: type) -> npt.NDArray[Any]:
    """Per-series rows of `steps` values as one (series, steps) matrix of `dtype`,
    also when there are no rows (where `np.array([])` would be float and 1-D)."""
    if not rows:
        return np.zeros((0, steps), dtype=dtype)
    return np.array(rows, dtype=dtype).reshape(len(rows), steps)


@dataclass
class Scalar:
    """One float64 value per step."""

    values: Floats

    def __post_init__(self) -> None:
        _check("Scalar.values", self.values, np.float64, (None,))


@dataclass
class String:
    value: str


@dataclass
class Vector:
    """An instant vector at every step: float64 `values` and a bool `present` mask,
    both (series, steps), also when there are no series. `sample_times` holds the
    times of the samples a selector picked (µs), kept only until an operation changes
    the values, for `timestamp()`."""

    labels: list[Labels]
    values: Floats
    present: Mask
    sample_times: Ints | None = None

    def __post_init__(self) -> None:
        # Checked, not coerced: a float mask or a 1-D empty array is a slip at its
        # source (it once crashed `&` far from where it was made), and an empty
        # (0,) array cannot be coerced anyway, as the number of steps is lost.
        shape = (len(self.labels), None)
        _check("Vector.values", self.values, np.float64, shape)
        _check("Vector.present", self.present, np.bool_, self.values.shape)
        if self.sample_times is not None:
            _check("Vector.sample_times", self.sample_times, np.int64, self.values.shape)

    @property
    def steps(self) -> int:
        """How many steps the grid has (also with no series)."""
        return int(self.values.shape[1])


@dataclass
class RangeVector:
    """Each series' samples (time order, stale markers removed) and, per step, the
    end E of its window [E - range, E]."""

    labels: list[Labels]
    times: list[Ints]
    values: list[Floats]
    window_ends: Ints
    range_us: int


Value = Scalar | String | Vector | RangeVector


def unique(vector: Vector) -> Vector:
    """Merge rows with equal label sets, as one series; two of them present at the
    same step is Prometheus's "vector cannot contain metrics with the same labelset"."""
    if len(set(vector.labels)) == len(vector.labels):
        return vector
    rows: dict[Labels, list[int]] = {}
    for index, labels in enumerate(vector.labels):
        rows.setdefault(labels, []).append(index)
    steps = vector.steps
    labels_out: list[Labels] = []
    values = np.zeros((len(rows), steps))
    present = np.zeros((len(rows), steps), dtype=bool)
    for out, (labels, group) in enumerate(rows.items()):
        labels_out.append(labels)
        if len(group) > 1 and (vector.present[group].sum(axis=0) > 1).any():
            raise EvaluationError("vector cannot contain metrics with the same labelset")
        for row in group:
            mask = vector.present[row]
            values[out, mask] = vector.values[row, mask]
            present[out] |= mask
    return Vector(labels_out, values, present)


def unique_over_time(vector: Vector) -> Vector:
    """`vector` if no two series that are present at some step share a label set,
    else Prometheus's error; it checks the whole matrix of a range function's (or
    unary minus's) output, so such series clash even if they never overlap."""
    kept = np.asarray(vector.present.any(axis=1))
    labels = [lb for lb, keep in zip(vector.labels, kept, strict=True) if keep]
    if len(set(labels)) != len(labels):
        raise EvaluationError("vector cannot contain metrics with the same labelset")
    return unique(vector)  # merges what is left: repeats of series never present
