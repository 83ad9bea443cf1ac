"""Binary operators: arithmetic, comparisons and set operators, with vector matching.

Matching follows Prometheus's `VectorBinop`: series are paired by a signature
(the `on` labels, or all but the `ignoring` labels and `__name__`), per step,
with the same duplicate-series errors.
"""

from __future__ import annotations

import numpy as np

from querylang import ast
from querylang.errors import EvaluationError
from querylang.evaluator.values import (
    METRIC_NAME,
    Floats,
    Labels,
    Mask,
    Scalar,
    Value,
    Vector,
    drop_name,
    label_value,
    stacked,
    unique,
)

_ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "^"})


def operate(op: str, left: Floats, right: Floats) -> Floats:
    """Element-wise `op` with Go's float semantics (x/0 = ±Inf, fmod for %)."""
    with np.errstate(all="ignore"):
        match op:
            case "+":
                return left + right
            case "-":
                return left - right
            case "*":
                return left * right
            case "/":
                return left / right
            case "%":
                return np.fmod(left, right)
            case "^":
                return np.power(left, right)
            case "==":
                return (left == right) * 1.0
            case "!=":
                return (left != right) * 1.0
            case ">":
                return (left > right) * 1.0
            case "<":
                return (left < right) * 1.0
            case ">=":
                return (left >= right) * 1.0
            case "<=":
                return (left <= right) * 1.0
    raise AssertionError(op)


def apply(node: ast.BinaryExpr, left: Value, right: Value) -> Value:
    """`left op right` for any pair of scalar and vector operands."""
    if isinstance(left, Scalar) and isinstance(right, Scalar):
        return Scalar(operate(node.op, left.values, right.values))
    if isinstance(left, Vector) and isinstance(right, Vector):
        assert node.matching is not None
        if node.op in ast.SET_OPS:
            return _set_operation(node.op, left, right, node.matching)
        return _vector_vector(node, left, right, node.matching)
    if isinstance(left, Vector) and isinstance(right, Scalar):
        return _vector_scalar(node, left, right.values, vector_on_left=True)
    if isinstance(left, Scalar) and isinstance(right, Vector):
        return _vector_scalar(node, right, left.values, vector_on_left=False)
    raise AssertionError(f"operands {type(left).__name__}, {type(right).__name__}")


def _vector_scalar(
    node: ast.BinaryExpr, vector: Vector, scalar: Floats, vector_on_left: bool
) -> Vector:
    left, right = (vector.values, scalar) if vector_on_left else (scalar, vector.values)
    result = operate(node.op, np.broadcast_to(left, vector.values.shape), right)
    present = vector.present
    if node.op in ast.COMPARISON_OPS:
        if node.return_bool:
            values = result
        else:
            present = present & (result == 1.0)
            values = vector.values  # a filter keeps the vector's own value
    else:
        values = result
    drop = node.op in _ARITHMETIC or node.return_bool
    labels = [drop_name(lb) for lb in vector.labels] if drop else list(vector.labels)
    return unique(Vector(labels, np.array(values, dtype=np.float64), present))


def signature(labels: Labels, matching: ast.VectorMatching) -> Labels:
    """The labels two series must share to match."""
    if matching.on:
        wanted = set(matching.labels)
        return tuple(pair for pair in labels if pair[0] in wanted)
    ignored = {*matching.labels, METRIC_NAME}
    return tuple(pair for pair in labels if pair[0] not in ignored)


def _set_operation(op: str, left: Vector, right: Vector, matching: ast.VectorMatching) -> Vector:
    """and, or, unless: per step, by whether the other side has the signature then."""
    steps = left.steps
    none = np.zeros(steps, dtype=bool)

    def presence_by_signature(vector: Vector) -> dict[Labels, Mask]:
        found: dict[Labels, Mask] = {}
        for labels, row in zip(vector.labels, vector.present, strict=True):
            sig = signature(labels, matching)
            found[sig] = found.get(sig, none) | row
        return found

    def kept(vector: Vector, other: dict[Labels, Mask], keep_matched: bool) -> Mask:
        """`vector`'s presence where the other side does (or does not) have its match."""
        rows: list[Mask] = []
        for labels, row in zip(vector.labels, vector.present, strict=True):
            matched = other.get(signature(labels, matching), none)
            rows.append(row & matched if keep_matched else row & ~matched)
        return stacked(rows, steps, np.bool_)

    if op in ("and", "unless"):
        present = kept(left, presence_by_signature(right), keep_matched=op == "and")
        return Vector(list(left.labels), left.values, present)
    right_kept = kept(right, presence_by_signature(left), keep_matched=False)
    return unique(
        Vector(
            list(left.labels) + list(right.labels),
            np.concatenate([left.values, right.values]),
            np.concatenate([left.present, right_kept]),
        )
    )


def _vector_vector(
    node: ast.BinaryExpr, left: Vector, right: Vector, matching: ast.VectorMatching
) -> Vector:
    """Arithmetic and comparison between two vectors (one-to-one, many-to-one or
    one-to-many), per step as in Prometheus."""
    swap = matching.card == "one-to-many"
    many, one = (right, left) if swap else (left, right)
    many_sigs = [signature(lb, matching) for lb in many.labels]
    one_rows: dict[Labels, list[int]] = {}
    for row, lb in enumerate(one.labels):
        one_rows.setdefault(signature(lb, matching), []).append(row)
    steps = left.steps
    for sig, rows in one_rows.items():
        if len(rows) > 1 and (one.present[rows].sum(axis=0) > 1).any():
            side = "left" if swap else "right"
            raise EvaluationError(
                f"found duplicate series for the match group {_show(sig)} on the {side} "
                "hand-side of the operation; many-to-many matching not allowed: "
                "matching labels must be unique on one side"
            )
    out_labels: list[Labels] = []
    out_values: list[np.ndarray] = []
    out_present: list[np.ndarray] = []
    matched: dict[Labels, np.ndarray] = {}
    for row, sig in enumerate(many_sigs):
        rows = one_rows.get(sig, [])
        if not rows:
            continue
        # The one side's present series at each step (at most one, checked above).
        other_values = np.zeros(steps)
        other_present = np.zeros(steps, dtype=bool)
        for other in rows:
            mask = one.present[other]
            other_values[mask] = one.values[other, mask]
            other_present |= mask
        present = many.present[row] & other_present
        if matching.card == "one-to-one":
            seen = matched.get(sig)
            if seen is not None and (seen & present).any():
                raise EvaluationError(
                    "multiple matches for labels: many-to-one matching must be explicit "
                    "(group_left/group_right)"
                )
            matched[sig] = present if seen is None else seen | present
        lv, rv = (other_values, many.values[row]) if swap else (many.values[row], other_values)
        result = operate(node.op, lv, rv)
        if node.op in ast.COMPARISON_OPS and not node.return_bool:
            present = present & (result == 1.0)
            result = lv
        for other in rows:
            mask = present & one.present[other]
            if not mask.any():
                continue
            out_labels.append(_result_labels(many.labels[row], one.labels[other], node, matching))
            out_values.append(np.where(mask, result, 0.0))
            out_present.append(mask)
    vector = Vector(
        out_labels, stacked(out_values, steps, np.float64), stacked(out_present, steps, np.bool_)
    )
    if matching.card != "one-to-one" and len(set(out_labels)) != len(out_labels):
        by_labels: dict[Labels, list[int]] = {}
        for index, lb in enumerate(out_labels):
            by_labels.setdefault(lb, []).append(index)
        for rows in by_labels.values():
            if len(rows) > 1 and (vector.present[rows].sum(axis=0) > 1).any():
                raise EvaluationError(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                )
    return unique(vector)


def _result_labels(
    many: Labels, one: Labels, node: ast.BinaryExpr, matching: ast.VectorMatching
) -> Labels:
    """Prometheus's `resultMetric`."""
    labels = dict(many)
    if node.op in _ARITHMETIC or node.return_bool:
        labels.pop(METRIC_NAME, None)
    if matching.card == "one-to-one":
        if matching.on:
            labels = {k: v for k, v in labels.items() if k in matching.labels}
        else:
            for name in matching.labels:
                labels.pop(name, None)
    for name in matching.include:
        value = label_value(one, name)
        if value:
            labels[name] = value
        else:
            labels.pop(name, None)
    return tuple(sorted(labels.items()))


def _show(labels: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}"
