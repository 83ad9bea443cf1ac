"""Aggregation operators (`sum by (…)`, `topk`, `quantile`, `count_values`, …)."""

from __future__ import annotations

import numpy as np

from querylang import ast
from querylang.errors import EvaluationError
from querylang.evaluator.formatting import format_value
from querylang.evaluator.quantiles import quantile_sorted, sort_nan_first
from querylang.evaluator.values import (
    METRIC_NAME,
    Floats,
    Labels,
    Scalar,
    String,
    Value,
    Vector,
    stacked,
    with_label,
)
from querylang.labels import is_valid_label_name


def group_labels(labels: Labels, grouping: tuple[str, ...], without: bool) -> Labels:
    """The labels a series contributes to its group's key (and output)."""
    if without:
        dropped = {*grouping, METRIC_NAME}
        return tuple(pair for pair in labels if pair[0] not in dropped)
    wanted = set(grouping)
    return tuple(pair for pair in labels if pair[0] in wanted)


def aggregate(node: ast.AggregateExpr, vector: Vector, param: Value | None) -> Vector:
    """Evaluate one aggregation over every step."""
    if node.op in ("topk", "bottomk"):
        assert isinstance(param, Scalar)
        return _top(node, vector, param.values)
    if node.op == "count_values":
        assert isinstance(param, String)
        return _count_values(node, vector, param.value)
    keys = [group_labels(lb, node.grouping, node.without) for lb in vector.labels]
    groups: dict[Labels, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    steps = vector.steps
    out_values = np.zeros((len(groups), steps))
    out_present = np.zeros((len(groups), steps), dtype=bool)
    phi = param.values if isinstance(param, Scalar) else None
    for out, rows in enumerate(groups.values()):
        values = vector.values[rows]
        present = vector.present[rows]
        count = present.sum(axis=0)
        out_present[out] = count > 0
        out_values[out] = _reduce(node.op, values, present, count, phi)
    return Vector(list(groups), out_values, out_present)


def _reduce(
    op: str, values: Floats, present: np.ndarray, count: np.ndarray, phi: Floats | None
) -> Floats:
    with np.errstate(all="ignore"):
        if op == "sum":
            return np.where(present, values, 0.0).sum(axis=0)
        if op == "count":
            return count.astype(np.float64)
        if op == "avg":
            return _mean(values, present, count)
        if op == "min":
            return np.fmin.reduce(np.where(present, values, np.nan), axis=0)
        if op == "max":
            return np.fmax.reduce(np.where(present, values, np.nan), axis=0)
        if op in ("stddev", "stdvar"):
            mean = _mean(values, present, count)
            deviation = np.where(present, values - mean, 0.0)
            variance = (deviation * deviation).sum(axis=0) / np.maximum(count, 1)
            return np.sqrt(variance) if op == "stddev" else variance
        if op == "quantile":
            assert phi is not None
            result = np.full(values.shape[1], np.nan)
            for step in np.flatnonzero(count):
                column = sort_nan_first(values[present[:, step], step])
                result[step] = quantile_sorted(phi[step], column)
            return result
    raise AssertionError(op)


def _mean(values: Floats, present: np.ndarray, count: np.ndarray) -> Floats:
    """The mean as a sum of v/n, like Prometheus's running mean: huge finite values
    do not overflow, and +Inf with -Inf gives NaN."""
    with np.errstate(all="ignore"):
        return np.where(present, values / np.maximum(count, 1), 0.0).sum(axis=0)


def _top(node: ast.AggregateExpr, vector: Vector, k_values: Floats) -> Vector:
    """topk/bottomk: per group and step the k best series, which keep their labels.
    NaN ranks last, as in Prometheus's heaps."""
    keys = [group_labels(lb, node.grouping, node.without) for lb in vector.labels]
    groups: dict[Labels, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    present = np.zeros_like(vector.present)
    descending = node.op == "topk"
    for k_value in k_values:
        if not -(2.0**63) <= k_value < 2.0**63:  # NaN too
            raise EvaluationError(f"Scalar value {_go_value(float(k_value))} overflows int64")
    for step in range(vector.steps):
        k = int(k_values[step])
        if k < 1:
            continue
        for rows in groups.values():
            candidates = [r for r in rows if vector.present[r, step]]
            if not candidates:
                continue
            values = vector.values[candidates, step]
            nan = np.isnan(values)
            order = np.lexsort((-values if descending else values, nan))
            for index in order[:k]:
                present[candidates[index], step] = True
    return Vector(list(vector.labels), vector.values, present)


def _count_values(node: ast.AggregateExpr, vector: Vector, label: str) -> Vector:
    if not is_valid_label_name(label):
        raise EvaluationError(f"invalid label name {label!r}")
    steps = vector.steps
    counts: dict[Labels, Floats] = {}
    for row, labels in enumerate(vector.labels):
        key = group_labels(labels, node.grouping, node.without)
        for step in np.flatnonzero(vector.present[row]):
            out = with_label(key, label, format_value(vector.values[row, step]))
            counts.setdefault(out, np.zeros(steps))[step] += 1
    values = stacked(list(counts.values()), steps, np.float64)
    return Vector(list(counts), values, values > 0)


def _go_value(value: float) -> str:
    """A float as Go's %v prints one (NaN, +Inf, 1e+19)."""
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
