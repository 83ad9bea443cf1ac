"""querylang.parser: the cases in parser_cases.txt, exact ASTs with positions, and fuzzing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark import Lark

from querylang import ast
from querylang.ast import MatchOp, ValueType
from querylang.errors import ParseError
from querylang.parser import parse
from querylang.printer import to_promql
from querylang.typecheck import value_type

CASES_FILE = Path(__file__).with_name("parser_cases.txt")
GRAMMAR_FILE = Path(__file__).parents[2] / "querylang" / "grammar.lark"


def test_grammar_has_only_its_deliberate_conflict(caplog: pytest.LogCaptureFixture) -> None:
    """Lark resolves LALR shift/reduce conflicts silently, as shifts; the only one
    intended is `group_left (` opening the label list, as in Prometheus."""
    with caplog.at_level(logging.DEBUG, logger="lark"):
        Lark(GRAMMAR_FILE.read_text(encoding="utf-8"), parser="lalr", maybe_placeholders=True)
    messages = [record.getMessage() for record in caplog.records]
    assert [m for m in messages if "conflict" in m.lower()] == [
        "Shift/Reduce conflict for terminal LPAR: (resolving as shift)"
    ] * 2
    assert sorted(m for m in messages if m.startswith(" * ")) == [
        " * <group : GROUP_LEFT>",
        " * <group : GROUP_RIGHT>",
    ]


def _read_cases() -> tuple[list[object], list[object]]:
    """(valid, invalid) pytest params from the data file: a query line, then `=> canonical`
    or `!! position message-fragment`."""
    lines = [
        (number, line.strip())
        for number, line in enumerate(CASES_FILE.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip() and not line.startswith("#")
    ]
    valid: list[object] = []
    invalid: list[object] = []
    for (number, query), (expectation_number, expectation) in zip(
        lines[::2], lines[1::2], strict=True
    ):
        marker, _, rest = expectation.partition(" ")
        case_id = f"line {number}: {query}"
        if marker == "=>":
            valid.append(pytest.param(query, rest, id=case_id))
        elif marker == "!!":
            position, _, fragment = rest.partition(" ")
            invalid.append(pytest.param(query, int(position), fragment, id=case_id))
        else:
            raise ValueError(f"{CASES_FILE.name}:{expectation_number}: expected '=>' or '!!'")
    return valid, invalid


VALID_CASES, INVALID_CASES = _read_cases()


@pytest.mark.parametrize(("query", "canonical"), VALID_CASES)
def test_valid_query_parses_to_its_canonical_form(query: str, canonical: str) -> None:
    expr = parse(query)
    assert to_promql(expr) == canonical
    _assert_type_agrees(expr)


def _assert_type_agrees(expr: ast.Expr) -> None:
    """The type the parser checks with (carried up while building) is the one
    `typecheck.value_type` gives later phases: `sum(...)` accepts only a vector."""
    try:
        parse(f"sum({to_promql(expr)})")
    except ParseError as err:
        assert "expected type instant vector" in err.detail
        assert value_type(expr) is not ValueType.VECTOR
    else:
        assert value_type(expr) is ValueType.VECTOR


@pytest.mark.parametrize(("query", "position", "fragment"), INVALID_CASES)
def test_invalid_query_is_rejected_with_position(query: str, position: int, fragment: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(query)
    assert fragment in caught.value.detail
    assert caught.value.position == position
    assert caught.value.query == query


def _name(metric: str) -> ast.Matcher:
    return ast.Matcher("__name__", MatchOp.EQ, metric)


def _foo(pos: int = 0, **fields: object) -> ast.VectorSelector:
    return ast.VectorSelector((_name("foo"),), pos=pos, **fields)  # type: ignore[arg-type]


ONE_TO_ONE = ast.VectorMatching("one-to-one")

# Exact trees, positions included: each node's `pos` is its first character.
AST_CASES = [
    pytest.param(
        'sum by (job) (rate(foo{code=~"5.."}[5m]))',
        ast.AggregateExpr(
            "sum",
            ast.Call(
                "rate",
                (
                    ast.MatrixSelector(
                        ast.VectorSelector(
                            (_name("foo"), ast.Matcher("code", MatchOp.RE, "5..")), pos=19
                        ),
                        300_000_000,
                        pos=19,
                    ),
                ),
                pos=14,
            ),
            grouping=("job",),
            pos=0,
        ),
        id="aggregation of a rate",
    ),
    pytest.param(
        "-2 ^ 2",
        ast.UnaryExpr(
            ast.BinaryExpr(
                "^", ast.NumberLiteral(2.0, pos=1), ast.NumberLiteral(2.0, pos=5), pos=1
            ),
            pos=0,
        ),
        id="^ binds tighter than unary minus",
    ),
    pytest.param("-1.5", ast.NumberLiteral(-1.5, pos=0), id="minus folds into a literal"),
    pytest.param(
        "-(1)", ast.UnaryExpr(ast.NumberLiteral(1.0, pos=2), pos=0), id="but not through parens"
    ),
    pytest.param("+foo", _foo(pos=1), id="unary plus disappears"),
    pytest.param(
        "2 ^ 3 ^ 2",
        ast.BinaryExpr(
            "^",
            ast.NumberLiteral(2.0, pos=0),
            ast.BinaryExpr(
                "^", ast.NumberLiteral(3.0, pos=4), ast.NumberLiteral(2.0, pos=8), pos=4
            ),
            pos=0,
        ),
        id="^ is right-associative",
    ),
    pytest.param(
        "foo - foo - 1",
        ast.BinaryExpr(
            "-",
            ast.BinaryExpr("-", _foo(), _foo(pos=6), matching=ONE_TO_ONE, pos=0),
            ast.NumberLiteral(1.0, pos=12),
            pos=0,
        ),
        id="- is left-associative; vector-scalar has no matching",
    ),
    pytest.param(
        "(foo) * on(a) group_left(b) foo",
        ast.BinaryExpr(
            "*",
            _foo(pos=1),
            _foo(pos=28),
            matching=ast.VectorMatching("many-to-one", on=True, labels=("a",), include=("b",)),
            pos=0,
        ),
        id="group_left",
    ),
    pytest.param(
        "foo unless ignoring(a) foo",
        ast.BinaryExpr(
            "unless",
            _foo(),
            _foo(pos=23),
            matching=ast.VectorMatching("many-to-many", labels=("a",)),
            pos=0,
        ),
        id="set operators are many-to-many",
    ),
    pytest.param(
        "1 >= bool 2",
        ast.BinaryExpr(
            ">=",
            ast.NumberLiteral(1.0, pos=0),
            ast.NumberLiteral(2.0, pos=10),
            return_bool=True,
            pos=0,
        ),
        id="bool comparison of scalars",
    ),
    pytest.param(
        "foo[1h:] offset -5m @ 1.000001",
        ast.Subquery(
            _foo(),
            3_600_000_000,
            None,
            offset_us=-300_000_000,
            at=ast.AtModifier("time", 1_000_001),
            pos=0,
        ),
        id="subquery with default step, offset and @ in microseconds",
    ),
    pytest.param(
        "foo[1d] @ end() offset 1y",
        ast.MatrixSelector(
            _foo(offset_us=365 * 86_400_000_000, at=ast.AtModifier("end")), 86_400_000_000
        ),
        id="modifiers of a matrix selector live on its vector selector",
    ),
    pytest.param(
        '{job="a", __name__=~"x.*"}',
        ast.VectorSelector(
            (ast.Matcher("job", MatchOp.EQ, "a"), ast.Matcher("__name__", MatchOp.RE, "x.*")),
            pos=0,
        ),
        id="selector without a metric name keeps matcher order",
    ),
    pytest.param(
        "topk without (a) (3, foo # three of them\n)",
        ast.AggregateExpr(
            "topk",
            _foo(pos=21),
            ast.NumberLiteral(3.0, pos=18),
            grouping=("a",),
            without=True,
            pos=0,
        ),
        id="aggregation parameter, comment to end of line",
    ),
    pytest.param(
        "label_join(foo, 'd', `,`, \"s\")",
        ast.Call(
            "label_join",
            (
                _foo(pos=11),
                ast.StringLiteral("d", pos=16),
                ast.StringLiteral(",", pos=21),
                ast.StringLiteral("s", pos=26),
            ),
            pos=0,
        ),
        id="three quote styles",
    ),
]


@pytest.mark.parametrize(("query", "expected"), AST_CASES)
def test_parse_builds_the_exact_tree(query: str, expected: ast.Expr) -> None:
    assert parse(query) == expected


# Pieces of PromQL glued together at random reach far more parser states than
# arbitrary text does.
PIECES = [
    *("sum", "topk", "count_values", "by", "without", "on", "ignoring", "group_left"),
    *("group_right", "bool", "offset", "and", "or", "unless", "start()", "end()", "@"),
    *("rate", "label_join", "time", "foo", "job:x", "__name__", "on_fire", "Inf", "NaN"),
    *("1", "0x1f", "1e3", ".5", "010", "5m", "1h30m", "0s", "-", "+", "*", "/", "%", "^"),
    *("==", "!=", ">", "<=", "=", "=~", "!~", "(", ")", "{", "}", "[", "]", ":", ","),
    *('"a"', "'b'", "`c`", '".*"', '"("', '"\\x"', "# c\n", " ", "\n", "\\", "$"),
]
GLUED = st.lists(st.sampled_from(PIECES), max_size=25).map("".join)
SPACED = st.lists(st.sampled_from(PIECES), max_size=25).map(" ".join)


DEEP = [
    pytest.param("1" + " + 1" * 127, None, id="128 levels of binary operators"),
    pytest.param("1" + " + 1" * 128, 0, id="129 levels of binary operators"),
    pytest.param("-" * 127 + "foo", None, id="128 levels of unary minus"),
    pytest.param("-" * 5000 + "foo", 4872, id="5001 levels of unary minus"),
    pytest.param("-" * 5001 + "1", None, id="minus signs fold into the literal"),
    pytest.param("(" * 5000 + "foo" + ")" * 5000, None, id="parentheses add no level"),
    pytest.param("abs(" * 200 + "foo" + ")" * 200, 4 * 72, id="200 nested calls"),
]


@pytest.mark.parametrize(("query", "position"), DEEP)
def test_nesting_is_limited(query: str, position: int | None) -> None:
    """Trees too deep for the recursive phases after the parser (the printer among
    them) are refused with a ParseError rather than failing there."""
    if position is None:
        to_promql(parse(query))
        return
    with pytest.raises(ParseError, match="nested too deeply") as caught:
        parse(query)
    assert caught.value.position == position


@settings(deadline=None)
@given(st.one_of(st.text(max_size=40), GLUED, SPACED))
def test_any_text_parses_or_raises_parse_error(query: str) -> None:
    """Anything parses or raises a ParseError pointing into the query, and what
    parses prints to text that parses to the same canonical form."""
    try:
        expr = parse(query)
    except ParseError as err:
        assert 0 <= err.position <= len(query)
        assert err.query == query
        return
    printed = to_promql(expr)
    assert to_promql(parse(printed)) == printed
    _assert_type_agrees(expr)
