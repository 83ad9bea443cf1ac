"""querylang.printer: canonical text, minimal parentheses, and print-parse round trips."""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from querylang import ast
from querylang.ast import SET_OPS, MatchOp, ValueType
from querylang.functions import FUNCTIONS
from querylang.parser import parse
from querylang.printer import to_promql
from querylang.typecheck import value_type


def without_positions(node: Any) -> Any:
    """`node` with every `pos` set to 0, so trees compare by structure alone."""
    if isinstance(node, tuple):
        return tuple(without_positions(item) for item in node)
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return node
    fields = {
        field.name: 0 if field.name == "pos" else without_positions(getattr(node, field.name))
        for field in dataclasses.fields(node)
    }
    return type(node)(**fields)


SPELLINGS = [
    pytest.param(
        [
            'sum(rate(foo{job="api"}[90s])) by (code)',
            "sum by(code)(rate(foo{job='api'}[1m30s]))",
            "SUM BY (code) (rate( foo{ job = `api` , } [ 90000ms ] ))",
            '# total\nsum by (code,) (\n  rate(foo{job="api"}[1m30s])  # per second\n)',
        ],
        'sum by (code) (rate(foo{job="api"}[1m30s]))',
        id="aggregation",
    ),
    pytest.param(
        [
            "foo + on(a) group_left() bar",
            "foo+ON(a)GROUP_LEFT bar",
            "foo + on(a) group_left() (bar)",
        ],
        "foo + on (a) group_left bar",
        id="vector matching",
    ),
    pytest.param(
        ["1e3 * foo", "1000 * foo", "0x3e8 * foo", "1000.0 * foo", "+1000 * (foo)"],
        "1000 * foo",
        id="numbers",
    ),
    pytest.param(
        ["foo offset 1h @ 10", "foo @ 10.000 offset 60m", "foo @ 1e1 offset 3600s"],
        "foo @ 10 offset 1h",
        id="modifiers",
    ),
    pytest.param(
        ['{__name__="foo"}', "foo", "foo{}", "(((foo)))"],
        "foo",
        id="metric name",
    ),
]


@pytest.mark.parametrize(("spellings", "canonical"), SPELLINGS)
def test_spellings_of_one_query_print_identically(spellings: list[str], canonical: str) -> None:
    assert {to_promql(parse(query)) for query in spellings} == {canonical}


def _vector(metric: str) -> ast.VectorSelector:
    return ast.VectorSelector((ast.Matcher("__name__", MatchOp.EQ, metric),))


A, B, C = _vector("a"), _vector("b"), _vector("c")


def _binary(op: ast.BinaryOp, lhs: ast.Expr, rhs: ast.Expr) -> ast.BinaryExpr:
    """`lhs op rhs` with the default matching when both sides are vectors."""
    if value_type(lhs) is not ValueType.VECTOR or value_type(rhs) is not ValueType.VECTOR:
        return ast.BinaryExpr(op, lhs, rhs)
    card = "many-to-many" if op in SET_OPS else "one-to-one"
    return ast.BinaryExpr(op, lhs, rhs, matching=ast.VectorMatching(card))


PRINTED = [
    pytest.param(_binary("-", A, _binary("-", B, C)), "a - (b - c)", id="left-assoc right operand"),
    pytest.param(_binary("-", _binary("-", A, B), C), "a - b - c", id="left-assoc left operand"),
    pytest.param(_binary("^", _binary("^", A, B), C), "(a ^ b) ^ c", id="right-assoc left operand"),
    pytest.param(_binary("^", A, _binary("^", B, C)), "a ^ b ^ c", id="right-assoc right operand"),
    pytest.param(_binary("*", _binary("+", A, B), C), "(a + b) * c", id="looser operand"),
    pytest.param(_binary("+", A, _binary("*", B, C)), "a + b * c", id="tighter operand"),
    pytest.param(
        _binary("or", _binary("and", A, B), _binary("unless", B, C)),
        "a and b or b unless c",
        id="set operator levels",
    ),
    pytest.param(
        ast.UnaryExpr(ast.NumberLiteral(2.0)), "-(2)", id="negated literal stays unfolded"
    ),
    pytest.param(ast.UnaryExpr(ast.NumberLiteral(-2.0)), "-(-2)", id="negated negative literal"),
    pytest.param(ast.UnaryExpr(ast.UnaryExpr(A)), "-(-a)", id="double negation"),
    pytest.param(ast.UnaryExpr(_binary("^", A, B)), "-a ^ b", id="unary over ^"),
    pytest.param(ast.UnaryExpr(_binary("*", A, B)), "-(a * b)", id="unary over *"),
    pytest.param(_binary("*", ast.UnaryExpr(A), B), "-a * b", id="unary as left operand"),
    pytest.param(_binary("^", ast.UnaryExpr(A), B), "(-a) ^ b", id="unary base of ^"),
    pytest.param(_binary("^", A, ast.UnaryExpr(B)), "a ^ -b", id="unary exponent"),
    pytest.param(
        _binary("^", ast.NumberLiteral(-2.0), ast.NumberLiteral(2.0)),
        "(-2) ^ 2",
        id="negative literal base of ^",
    ),
    pytest.param(_binary("-", A, ast.NumberLiteral(-1.0)), "a - -1", id="negative literal operand"),
    pytest.param(
        ast.Subquery(_binary("+", A, B), 3_600_000_000, 60_000_000),
        "(a + b)[1h:1m]",
        id="subquery of a binary expression",
    ),
    pytest.param(
        ast.BinaryExpr(
            "*",
            A,
            _binary("+", B, C),
            matching=ast.VectorMatching("many-to-one", on=True, labels=("x",)),
        ),
        "a * on (x) group_left () (b + c)",
        id="empty include list before a parenthesis",
    ),
    pytest.param(
        ast.BinaryExpr("*", A, B, matching=ast.VectorMatching("one-to-many")),
        "a * ignoring () group_right b",
        id="grouping needs on or ignoring",
    ),
    pytest.param(
        ast.VectorSelector(
            (
                ast.Matcher("__name__", MatchOp.EQ, "count"),
                ast.Matcher("on", MatchOp.NE, 'say "hi"\\\n\x00\u2028é'),
            )
        ),
        '{__name__="count",on!="say \\"hi\\"\\\\\\n\\u0000\\u2028é"}',
        id="keyword metric name and escapes",
    ),
    pytest.param(
        ast.VectorSelector(
            (ast.Matcher("__name__", MatchOp.EQ, "a"), ast.Matcher("__name__", MatchOp.RE, "b"))
        ),
        '{__name__="a",__name__=~"b"}',
        id="two name matchers",
    ),
    pytest.param(
        ast.AggregateExpr("sum", A, without=True), "sum without () (a)", id="empty without"
    ),
    pytest.param(
        ast.NumberLiteral(0.1 + 0.2), "0.30000000000000004", id="shortest round-trip float"
    ),
    pytest.param(ast.NumberLiteral(-0.0), "-0", id="negative zero"),
    pytest.param(ast.NumberLiteral(float("-inf")), "-Inf", id="negative infinity"),
    pytest.param(
        ast.VectorSelector(A.matchers, at=ast.AtModifier("time", -1_500_001)),
        "a @ -1.500001",
        id="@ time in exact seconds",
    ),
    pytest.param(
        ast.MatrixSelector(A, 2 * 7 * 86_400_000_000 + 86_400_000_000),
        "a[15d]",
        id="weeks only when exact",
    ),
    pytest.param(
        ast.MatrixSelector(A, 366 * 86_400_000_000 + 1_000),
        "a[366d1ms]",
        id="years only when exact",
    ),
]


@pytest.mark.parametrize(("expr", "text"), PRINTED)
def test_printed_text_is_minimal_and_parses_back(expr: ast.Expr, text: str) -> None:
    assert to_promql(expr) == text
    assert without_positions(parse(text)) == expr


@pytest.mark.parametrize("duration_us", [0, -1_000, 1_500])
def test_durations_promql_cannot_spell_are_refused(duration_us: int) -> None:
    with pytest.raises(ValueError, match="whole number of milliseconds"):
        to_promql(ast.MatrixSelector(A, duration_us))


# Generated ASTs: every one well-typed and in the form the parser produces.
BINARY_OPS: tuple[ast.BinaryOp, ...] = typing.get_args(ast.BinaryOp)
LABELS = st.sampled_from(["job", "le", "by", "on", "offset", "bool", "sum", "group_left", "_x"])
LABEL_LISTS = st.lists(LABELS, max_size=3).map(tuple)
METRICS = st.sampled_from(["up", "job:rate:5m", "sum_total", "on_fire", "sum", "Inf", "bool"])
REGEXES = st.sampled_from([".*", ".+", "a|b", "5..", "(?P<n>x)y", "", "\\d+", "[^\\n]"])
DURATIONS_US = st.integers(1, 10**8).map(lambda ms: ms * 1_000)
OFFSETS_US = st.one_of(st.just(0), DURATIONS_US, DURATIONS_US.map(lambda us: -us))
AT = st.one_of(
    st.none(),
    st.sampled_from([ast.AtModifier("start"), ast.AtModifier("end")]),
    st.integers(-(10**16), 10**16).map(lambda us: ast.AtModifier("time", us)),
)


@st.composite
def _selectors(draw: st.DrawFn) -> ast.VectorSelector:
    """A selector with at least one matcher that rejects the empty string."""
    if draw(st.booleans()):
        first = ast.Matcher("__name__", MatchOp.EQ, draw(METRICS))
    else:
        first = ast.Matcher(draw(LABELS), MatchOp.EQ, draw(st.text(min_size=1, max_size=5)))
    others = draw(
        st.lists(
            st.one_of(
                st.builds(
                    ast.Matcher,
                    LABELS,
                    st.sampled_from([MatchOp.EQ, MatchOp.NE]),
                    st.text(max_size=5),
                ),
                st.builds(ast.Matcher, LABELS, st.sampled_from([MatchOp.RE, MatchOp.NRE]), REGEXES),
            ),
            max_size=2,
        )
    )
    matchers = draw(st.permutations([first, *others]))
    return ast.VectorSelector(tuple(matchers), draw(OFFSETS_US), draw(AT))


SELECTORS = _selectors()
NUMBERS = st.floats(allow_nan=False).map(ast.NumberLiteral)
STRINGS = st.text(max_size=6).map(ast.StringLiteral)


@functools.cache
def _exprs(kind: ValueType, depth: int) -> st.SearchStrategy[ast.Expr]:
    """Expressions of type `kind` nested at most `depth` deep."""
    leaves: dict[ValueType, st.SearchStrategy[ast.Expr]] = {
        ValueType.SCALAR: st.one_of(NUMBERS, st.just(ast.Call("time", ()))),
        ValueType.VECTOR: SELECTORS,
        ValueType.MATRIX: st.builds(ast.MatrixSelector, SELECTORS, DURATIONS_US),
        ValueType.STRING: STRINGS,
    }
    if depth == 0:
        return leaves[kind]
    shallower = functools.partial(_exprs, depth=depth - 1)
    branches = [leaves[kind], _calls(kind, depth - 1)]
    if kind is ValueType.SCALAR:
        branches += [
            st.builds(ast.UnaryExpr, shallower(ValueType.SCALAR)),
            _binaries(shallower(ValueType.SCALAR), shallower(ValueType.SCALAR)),
        ]
    elif kind is ValueType.VECTOR:
        branches += [
            st.builds(ast.UnaryExpr, shallower(ValueType.VECTOR)),
            _aggregates(depth - 1),
            _binaries(shallower(ValueType.VECTOR), shallower(ValueType.VECTOR)),
            _binaries(shallower(ValueType.VECTOR), shallower(ValueType.SCALAR)),
            _binaries(shallower(ValueType.SCALAR), shallower(ValueType.VECTOR)),
        ]
    elif kind is ValueType.MATRIX:
        branches.append(
            st.builds(
                ast.Subquery,
                shallower(ValueType.VECTOR),
                DURATIONS_US,
                st.none() | DURATIONS_US,
                OFFSETS_US,
                AT,
            )
        )
    return st.one_of(branches)


def _calls(returns: ValueType, depth: int) -> st.SearchStrategy[ast.Expr]:
    names = sorted(name for name, signature in FUNCTIONS.items() if signature.returns is returns)
    return (
        st.sampled_from(names).flatmap(lambda name: _call(name, depth)) if names else st.nothing()
    )


def _call(name: str, depth: int) -> st.SearchStrategy[ast.Expr]:
    signature = FUNCTIONS[name]
    least = len(signature.args) - signature.optional
    most = len(signature.args) + (2 if signature.repeat_last else 0)

    def args(count: int) -> st.SearchStrategy[tuple[ast.Expr, ...]]:
        types = [signature.args[min(i, len(signature.args) - 1)] for i in range(count)]
        return st.tuples(*(_exprs(kind, depth) for kind in types))

    return st.integers(least, most).flatmap(args).map(lambda a: ast.Call(name, a))


def _aggregates(depth: int) -> st.SearchStrategy[ast.Expr]:
    params = {
        "topk": _exprs(ValueType.SCALAR, depth),
        "bottomk": _exprs(ValueType.SCALAR, depth),
        "quantile": _exprs(ValueType.SCALAR, depth),
        "count_values": STRINGS,
    }
    plain = ["sum", "avg", "min", "max", "count", "stddev", "stdvar"]
    ops = st.sampled_from([*plain, *params])
    return ops.flatmap(
        lambda op: st.builds(
            ast.AggregateExpr,
            st.just(op),
            _exprs(ValueType.VECTOR, depth),
            params.get(op, st.none()),
            LABEL_LISTS,
            st.booleans(),
        )
    )


@st.composite
def _matching(draw: st.DrawFn, op: ast.BinaryOp) -> ast.VectorMatching:
    on, labels = draw(st.booleans()), draw(LABEL_LISTS)
    if op in SET_OPS:
        return ast.VectorMatching("many-to-many", on, labels)
    card = draw(st.sampled_from(["one-to-one", "many-to-one", "one-to-many"]))
    if card == "one-to-one":
        return ast.VectorMatching("one-to-one", on, labels)
    include = draw(LABEL_LISTS.filter(lambda names: not on or not set(names) & set(labels)))
    return ast.VectorMatching(card, on, labels, include)


@st.composite
def _binaries(
    draw: st.DrawFn, lhs: st.SearchStrategy[ast.Expr], rhs: st.SearchStrategy[ast.Expr]
) -> ast.Expr:
    """`lhs op rhs` as Prometheus allows it: set operators and matching only between
    vectors, `bool` only on comparisons and required between scalars."""
    left, right = draw(lhs), draw(rhs)
    types = {value_type(left), value_type(right)}
    vectors = types == {ValueType.VECTOR}
    op = draw(st.sampled_from([op for op in BINARY_OPS if vectors or op not in SET_OPS]))
    comparison = op in ast.COMPARISON_OPS
    return_bool = comparison and (types == {ValueType.SCALAR} or draw(st.booleans()))
    matching = draw(_matching(op)) if vectors else None
    return ast.BinaryExpr(op, left, right, return_bool, matching)


@settings(deadline=None)
@given(st.one_of(*(_exprs(kind, 3) for kind in ValueType)))
def test_generated_tree_prints_and_parses_back(expr: ast.Expr) -> None:
    assert without_positions(parse(to_promql(expr))) == expr
