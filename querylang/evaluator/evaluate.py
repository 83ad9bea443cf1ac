"""The evaluator's entry point: one expression over every step of a grid."""

from __future__ import annotations

import numpy as np

from querylang import ast
from querylang.evaluator import aggregations, binary, calls, selectors
from querylang.evaluator.context import Context
from querylang.evaluator.values import (
    Scalar,
    String,
    Value,
    Vector,
    drop_name,
    unique_over_time,
)


def evaluate(expr: ast.Expr, ctx: Context) -> Value:
    """The value of `expr` at each of `ctx`'s steps."""
    # IEEE arithmetic as in Go, which never warns: overflow is ±Inf and Inf x 0 is
    # NaN. numpy's RuntimeWarnings about them would only be noise in the logs.
    with np.errstate(all="ignore"):
        return _evaluate(expr, ctx)


def _evaluate(expr: ast.Expr, ctx: Context) -> Value:
    match expr:
        case ast.NumberLiteral():
            return Scalar(np.full(ctx.steps, expr.value, dtype=np.float64))
        case ast.StringLiteral():
            return String(expr.value)
        case ast.VectorSelector():
            return selectors.instant(expr, ctx)
        case ast.MatrixSelector():
            return selectors.range_of(expr, ctx)
        case ast.Subquery():
            return selectors.subquery(expr, ctx, _evaluate)
        case ast.UnaryExpr():
            return _negate(_evaluate(expr.expr, ctx))
        case ast.BinaryExpr():
            return binary.apply(expr, _evaluate(expr.lhs, ctx), _evaluate(expr.rhs, ctx))
        case ast.AggregateExpr():
            param = _evaluate(expr.param, ctx) if expr.param is not None else None
            operand = _evaluate(expr.expr, ctx)
            assert isinstance(operand, Vector)
            return aggregations.aggregate(expr, operand, param)
        case ast.Call():
            return calls.IMPLEMENTATIONS[expr.func](expr, ctx, _evaluate)
    raise AssertionError(f"unknown node {type(expr).__name__}")


def _negate(value: Value) -> Value:
    if isinstance(value, Scalar):
        return Scalar(-value.values)
    assert isinstance(value, Vector)
    labels = [drop_name(lb) for lb in value.labels]
    return unique_over_time(Vector(labels, -value.values, value.present))
