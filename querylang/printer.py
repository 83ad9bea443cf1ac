"""AST to canonical PromQL text.

The results cache keys on this text, so it is canonical: spacing, quoting, number
and duration spellings and the place of `by (...)` depend only on the AST, and
parentheses appear only where precedence or associativity needs them. For any
AST the parser produces, `parse(to_promql(expr))` equals `expr` up to positions.
"""

from __future__ import annotations

import math
import re

from querylang import ast

# Binding strength, loosest first; unary minus sits between `*` and `^`.
_BINARY_PRECEDENCE = {
    "or": 1,
    "and": 2,
    "unless": 2,
    "==": 3,
    "!=": 3,
    ">": 3,
    "<": 3,
    ">=": 3,
    "<=": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "^": 7,
}
_UNARY = 6
_POW = _BINARY_PRECEDENCE["^"]
_ATOM = 8

# Words the lexer may take for a keyword where an expression starts, so a metric
# of that name is written `{__name__="sum"}`.
_KEYWORDS = frozenset(
    {"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile"}
    | {"count_values", "inf", "nan", "bool", "on", "ignoring", "group_left", "group_right"}
    | {"and", "or", "unless", "by", "without", "offset", "start", "end"}
)
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

_DURATION_UNITS_MS = (
    ("y", 365 * 86_400_000, True),
    ("w", 7 * 86_400_000, True),
    ("d", 86_400_000, False),
    ("h", 3_600_000, False),
    ("m", 60_000, False),
    ("s", 1_000, False),
    ("ms", 1, False),
)

_STRING_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def to_promql(expr: ast.Expr) -> str:
    """The canonical PromQL text of `expr`."""
    match expr:
        case ast.NumberLiteral():
            return _number(expr.value)
        case ast.StringLiteral():
            return _string(expr.value)
        case ast.VectorSelector():
            return _selector(expr) + _modifiers(expr.at, expr.offset_us)
        case ast.MatrixSelector():
            vector = expr.vector
            text = f"{_selector(vector)}[{_duration(expr.range_us)}]"
            return text + _modifiers(vector.at, vector.offset_us)
        case ast.Subquery():
            step = "" if expr.step_us is None else _duration(expr.step_us)
            inner = _operand(expr.expr, needs_parens=_precedence(expr.expr) < _ATOM)
            text = f"{inner}[{_duration(expr.range_us)}:{step}]"
            return text + _modifiers(expr.at, expr.offset_us)
        case ast.UnaryExpr():
            # Only `^` binds tighter than unary minus. A literal operand keeps its
            # parentheses too: `-1` would be read back as a negative literal.
            operand = expr.expr
            parens = _precedence(operand) < _POW or isinstance(operand, ast.NumberLiteral)
            return "-" + _operand(operand, parens)
        case ast.BinaryExpr():
            return _binary(expr)
        case ast.AggregateExpr():
            args = (expr.expr,) if expr.param is None else (expr.param, expr.expr)
            grouping = ""
            if expr.without:
                grouping = f" without {_labels(expr.grouping)} "
            elif expr.grouping:
                grouping = f" by {_labels(expr.grouping)} "
            return f"{expr.op}{grouping}({', '.join(map(to_promql, args))})"
        case ast.Call():
            return f"{expr.func}({', '.join(map(to_promql, expr.args))})"


def _binary(expr: ast.BinaryExpr) -> str:
    precedence = _BINARY_PRECEDENCE[expr.op]
    lhs_precedence, rhs_precedence = _precedence(expr.lhs), _precedence(expr.rhs)
    if expr.op == "^":  # Right-associative, and its right operand may be signed.
        lhs_parens, rhs_parens = lhs_precedence <= _POW, rhs_precedence < _UNARY
    else:
        lhs_parens, rhs_parens = lhs_precedence < precedence, rhs_precedence <= precedence
    rhs = _operand(expr.rhs, rhs_parens)
    modifiers = ["bool"] if expr.return_bool else []
    matching = expr.matching
    if matching is not None:
        grouped = matching.card in ("many-to-one", "one-to-many")
        if matching.on:
            modifiers.append(f"on {_labels(matching.labels)}")
        elif matching.labels or grouped:
            modifiers.append(f"ignoring {_labels(matching.labels)}")
        if grouped:
            side = "group_left" if matching.card == "many-to-one" else "group_right"
            # A bare `group_left` before `(` would read the parenthesis as its label list.
            if matching.include or rhs.startswith("("):
                side += f" {_labels(matching.include)}"
            modifiers.append(side)
    op = " ".join([expr.op, *modifiers])
    return f"{_operand(expr.lhs, lhs_parens)} {op} {rhs}"


def _precedence(expr: ast.Expr) -> int:
    match expr:
        case ast.BinaryExpr():
            return _BINARY_PRECEDENCE[expr.op]
        case ast.UnaryExpr():
            return _UNARY
        case ast.NumberLiteral() if math.copysign(1.0, expr.value) < 0:
            return _UNARY  # Written with a leading minus.
    return _ATOM


def _operand(expr: ast.Expr, needs_parens: bool) -> str:
    text = to_promql(expr)
    return f"({text})" if needs_parens else text


def _selector(selector: ast.VectorSelector) -> str:
    """`name{matchers}`, the name bare when it is the first and only `__name__`
    matcher and cannot be mistaken for a keyword."""
    matchers = selector.matchers
    name = ""
    if (
        matchers
        and matchers[0].name == "__name__"
        and matchers[0].op is ast.MatchOp.EQ
        and _METRIC_NAME.fullmatch(matchers[0].value)
        and matchers[0].value.lower() not in _KEYWORDS
        and all(matcher.name != "__name__" for matcher in matchers[1:])
    ):
        name, matchers = matchers[0].value, matchers[1:]
    if name and not matchers:
        return name
    inner = ",".join(f"{m.name}{m.op.value}{_string(m.value)}" for m in matchers)
    return f"{name}{{{inner}}}"


def _modifiers(at: ast.AtModifier | None, offset_us: int) -> str:
    text = ""
    if at is not None:
        text += f" @ {_seconds(at.time_us)}" if at.kind == "time" else f" @ {at.kind}()"
    if offset_us:
        text += (
            f" offset -{_duration(-offset_us)}"
            if offset_us < 0
            else f" offset {_duration(offset_us)}"
        )
    return text


def _labels(labels: tuple[str, ...]) -> str:
    return f"({', '.join(labels)})"


def _number(value: float) -> str:
    """Integers without a fraction, others in Python's shortest round-trip form."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e16:
        return f"{value:.0f}"
    return repr(value)


def _seconds(time_us: int) -> str:
    """Microseconds as exact decimal seconds: 1500000 is `1.5`."""
    whole, fraction = divmod(abs(time_us), 1_000_000)
    sign = "-" if time_us < 0 else ""
    return f"{sign}{whole}" + (f".{fraction:06d}".rstrip("0") if fraction else "")


def _duration(duration_us: int) -> str:
    """Prometheus's canonical spelling: `90s` is `1m30s`; years and weeks only when exact."""
    if duration_us <= 0 or duration_us % 1_000:
        raise ValueError(f"{duration_us} µs is not a positive whole number of milliseconds")
    remaining = duration_us // 1_000
    text = ""
    for unit, size, exact in _DURATION_UNITS_MS:
        if exact and remaining % size:
            continue
        count, remaining = divmod(remaining, size)
        if count:
            text += f"{count}{unit}"
    return text


def _string(value: str) -> str:
    """A double-quoted literal with Go escapes, which the parser reads back as `value`."""
    if value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return '"' + "".join(_escape(char) for char in value) + '"'


def _escape(char: str) -> str:
    if char in _STRING_ESCAPES:
        return _STRING_ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
