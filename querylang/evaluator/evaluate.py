"""The evaluator's entry point: one expression over every step of a grid."""

from __future__ import annotations

import numpy as np

from querylang import ast
from querylang.evaluator import aggregations, binary, calls, selectors
from querylang.evaluator.context import Context
from querylang.evaluator.values import Scalar, String, Value, Vector, drop_name


def evaluate(expr: ast.Expr, ctx: Context) -> Value:
    """The value of `expr` at each of `ctx`'s steps."""
    match expr:
        case ast.NumberLiteral():
            return Scalar(np.full(ctx.steps, expr.value))
        case ast.StringLiteral():
            return String(expr.value)
        case ast.VectorSelector():
            return selectors.instant(expr, ctx)
        case ast.MatrixSelector():
            return selectors.range_of(expr, ctx)
        case ast.Subquery():
            return selectors.subquery(expr, ctx, evaluate)
        case ast.UnaryExpr():
            return _negate(evaluate(expr.expr, ctx))
        case ast.BinaryExpr():
            return binary.apply(expr, evaluate(expr.lhs, ctx), evaluate(expr.rhs, ctx))
        case ast.AggregateExpr():
            param = evaluate(expr.param, ctx) if expr.param is not None else None
            operand = evaluate(expr.expr, ctx)
            assert isinstance(operand, Vector)
            return aggregations.aggregate(expr, operand, param)
        case ast.Call():
            return calls.IMPLEMENTATIONS[expr.func](expr, ctx, evaluate)
    raise AssertionError(f"unknown node {type(expr).__name__}")


def _negate(value: Value) -> Value:
    if isinstance(value, Scalar):
        return Scalar(-value.values)
    assert isinstance(value, Vector)
    return Vector([drop_name(lb) for lb in value.labels], -value.values, value.present)
