"""The value type each expression evaluates to."""

from __future__ import annotations

from querylang import ast
from querylang.ast import ValueType
from querylang.functions import FUNCTIONS


def value_type(expr: ast.Expr) -> ValueType:
    """The PromQL type of `expr`, assuming it type-checked when parsed."""
    match expr:
        case ast.NumberLiteral():
            return ValueType.SCALAR
        case ast.StringLiteral():
            return ValueType.STRING
        case ast.VectorSelector() | ast.AggregateExpr():
            return ValueType.VECTOR
        case ast.MatrixSelector() | ast.Subquery():
            return ValueType.MATRIX
        case ast.UnaryExpr():
            return value_type(expr.expr)
        case ast.BinaryExpr():
            if ValueType.VECTOR in (value_type(expr.lhs), value_type(expr.rhs)):
                return ValueType.VECTOR
            return ValueType.SCALAR
        case ast.Call():
            return FUNCTIONS[expr.func].returns
