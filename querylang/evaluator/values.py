"""The values an expression evaluates to, over every step of the evaluation grid.

A range query is evaluated for all steps at once: an instant vector is a matrix
of series x steps with a presence mask (NaN is a legitimate PromQL value, so
absence needs its own mask), a scalar is one value per step, and a range vector
keeps each series' samples plus, per step, the end of the window to slide over.
"""

from __future__ import annotations

from collections.abc import Iterable
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


@dataclass
class Scalar:
    values: Floats


@dataclass
class String:
    value: str


@dataclass
class Vector:
    """An instant vector at every step. `sample_times` holds the times of the samples
    a selector picked (µs), kept only until an operation changes the values, for
    `timestamp()`."""

    labels: list[Labels]
    values: Floats
    present: Mask
    sample_times: Ints | None = None

    @classmethod
    def empty(cls, steps: int) -> Vector:
        return cls([], np.empty((0, steps)), np.zeros((0, steps), dtype=bool))


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
    steps = vector.values.shape[1]
    labels_out: list[Labels] = []
    values = np.empty((len(rows), steps))
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
