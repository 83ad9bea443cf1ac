"""Evaluated values as query answers: Prometheus's result types, which expressions a
range query accepts, and the order of an instant vector."""

from __future__ import annotations

import numpy as np

from querylang import ast
from querylang.errors import BadRequest
from querylang.evaluator.values import RangeVector, Scalar, String, Value, Vector
from querylang.result import QueryResult, Series
from querylang.timegrid import TimeGrid
from querylang.typecheck import value_type


def check_range_expr(expr: ast.Expr) -> None:
    """BadRequest unless a range query may evaluate `expr` (a scalar or instant vector)."""
    kind = value_type(expr)
    if kind not in (ast.ValueType.SCALAR, ast.ValueType.VECTOR):
        raise BadRequest(
            f'invalid expression type "{_type_name(kind)}" for range query, '
            "must be Scalar or instant Vector"
        )


def range_answer(
    value: Value, grid: TimeGrid, tiers: tuple[str, ...] = ("raw",), notes: tuple[str, ...] = ()
) -> QueryResult:
    """A range query's matrix: each series' present steps, series in label order."""
    times = grid.times_us
    if isinstance(value, Scalar):
        return QueryResult("matrix", [Series((), times, value.values)], tiers, notes=notes)
    assert isinstance(value, Vector)
    series = [
        Series(labels, times[present], value.values[row][present])
        for row, (labels, present) in enumerate(zip(value.labels, value.present, strict=True))
        if present.any()
    ]
    series.sort(key=lambda s: s.labels)
    return QueryResult("matrix", series, tiers, notes=notes)


def instant_answer(
    expr: ast.Expr,
    value: Value,
    time_us: int,
    tiers: tuple[str, ...] = ("raw",),
    notes: tuple[str, ...] = (),
) -> QueryResult:
    """An instant query's answer, of the value's own type; a vector in the order
    Prometheus gives it."""
    stamp = np.array([time_us], dtype=np.int64)
    if isinstance(value, Scalar):
        return QueryResult("scalar", [Series((), stamp, value.values)], tiers, notes=notes)
    if isinstance(value, String):
        return QueryResult(
            "string", [Series((), stamp, np.zeros(1))], tiers, value.value, notes=notes
        )
    if isinstance(value, RangeVector):
        return QueryResult("matrix", _window_samples(value, time_us), tiers, notes=notes)
    assert isinstance(value, Vector)
    rows = [row for row in range(len(value.labels)) if value.present[row, 0]]
    rows = _instant_order(expr, value, rows)
    series = [Series(value.labels[row], stamp, value.values[row, :1]) for row in rows]
    return QueryResult("vector", series, tiers, notes=notes)


def _window_samples(matrix: RangeVector, time_us: int) -> list[Series]:
    """An instant query of a range vector: each series' samples in its window."""
    end = int(matrix.window_ends[0])
    series = []
    for labels, times, values in zip(matrix.labels, matrix.times, matrix.values, strict=True):
        keep = (times >= end - matrix.range_us) & (times <= end)
        if keep.any():
            series.append(Series(labels, times[keep], values[keep]))
    series.sort(key=lambda s: s.labels)
    return series


def _instant_order(expr: ast.Expr, vector: Vector, rows: list[int]) -> list[int]:
    """Prometheus orders an instant result only for sort(), sort_desc(), topk() and
    bottomk(); NaN sorts last."""
    descending: bool | None = None
    if isinstance(expr, ast.Call) and expr.func in ("sort", "sort_desc"):
        descending = expr.func == "sort_desc"
    elif isinstance(expr, ast.AggregateExpr) and expr.op in ("topk", "bottomk"):
        descending = expr.op == "topk"
    if descending is None:
        return rows
    values = [float(vector.values[row, 0]) for row in rows]

    def key(index: int) -> tuple[bool, float]:
        value = values[index]
        nan = value != value
        return (nan, 0.0 if nan else (-value if descending else value))

    return [rows[i] for i in sorted(range(len(rows)), key=key)]


def _type_name(kind: ast.ValueType) -> str:
    return {"matrix": "range vector", "vector": "instant vector"}.get(kind.value, kind.value)
