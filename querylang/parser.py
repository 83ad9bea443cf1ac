"""PromQL text to a type-checked AST.

Lark parses with `grammar.lark` (LALR(1), contextual lexer) and calls `_Builder`
on every reduction, so no parse tree is built: each callback makes one AST node
and type-checks it on the spot, as Prometheus's `checkAST` would. Lark's errors
and the builder's rejections both become `ParseError` with a 0-based position.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, replace
from decimal import Decimal
from importlib import resources
from typing import NamedTuple, cast

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from querylang import ast
from querylang.ast import COMPARISON_OPS, SET_OPS, MatchOp, ValueType
from querylang.errors import ParseError
from querylang.functions import FUNCTIONS
from querylang.regex import RegexError, matcher_regex


def parse(query: str) -> ast.Expr:
    """The AST of `query`; raises ParseError for bad syntax or an ill-typed expression."""
    try:
        return cast(_Part, _lark().parse(query)).expr
    except UnexpectedInput as err:
        raise _syntax_error(err, query) from None
    except _Rejected as err:
        raise ParseError(err.message, err.position, query) from None


@functools.cache
def _lark() -> Lark:
    """The parser, built on first use (about 0.1 s)."""
    grammar = resources.files("querylang").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        transformer=_Builder(),
        maybe_placeholders=True,
    )


class _Rejected(Exception):
    """A builder callback's rejection; `parse` adds the query text."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


# Every phase after the parser walks the tree recursively, a few frames per level;
# this keeps them all well inside Python's default limit of 1000 frames.
# Dashboards rarely nest past 20.
_MAX_DEPTH = 128


@dataclass(frozen=True, slots=True)
class _Part:
    """An expression as the builder passes it up: the node with its type and depth.

    Carrying these up keeps parsing linear; asking `typecheck.value_type` at every
    node would re-walk the subtree each time. `parenthesised` stands in for
    Prometheus's ParenExpr, which our AST lacks: with it Prometheus refuses
    `(foo)[5m]` and `(foo) offset 1m` and does not fold `-(1)` into a literal.
    `pos` is the node's, or its opening parenthesis's.
    """

    expr: ast.Expr
    type: ValueType
    depth: int
    pos: int
    parenthesised: bool = False


def _part(expr: ast.Expr, value_type: ValueType, *children: _Part) -> _Part:
    depth = 1 + max((child.depth for child in children), default=0)
    if depth > _MAX_DEPTH:
        raise _Rejected(f"query is nested too deeply (more than {_MAX_DEPTH} levels)", expr.pos)
    return _Part(expr, value_type, depth, expr.pos)


def _start(token: Token) -> int:
    """Where `token` begins; Lark types it optional, but lexed tokens always have it."""
    return token.start_pos or 0


class _Group(NamedTuple):
    token: Token
    include: tuple[Token, ...]


class _Matching(NamedTuple):
    token: Token
    labels: tuple[Token, ...]
    group: _Group | None


class _BinaryModifiers(NamedTuple):
    bool_token: Token | None
    matching: _Matching | None


class _Grouping(NamedTuple):
    without: bool
    labels: tuple[Token, ...]


class _Matchers(NamedTuple):
    brace: Token
    matchers: tuple[ast.Matcher, ...]


_TYPE_NAMES = {
    ValueType.SCALAR: "scalar",
    ValueType.VECTOR: "instant vector",
    ValueType.MATRIX: "range vector",
    ValueType.STRING: "string",
}

_BINARY_OPS: dict[str, ast.BinaryOp] = {
    "ADD": "+",
    "SUB": "-",
    "MUL": "*",
    "DIV": "/",
    "MOD": "%",
    "POW": "^",
    "EQLC": "==",
    "NEQ": "!=",
    "GTR": ">",
    "LSS": "<",
    "GTE": ">=",
    "LTE": "<=",
    "AND": "and",
    "OR": "or",
    "UNLESS": "unless",
}

_AGGREGATE_OPS: dict[str, ast.AggregateOp] = {
    "SUM": "sum",
    "AVG": "avg",
    "MIN": "min",
    "MAX": "max",
    "COUNT": "count",
    "STDDEV": "stddev",
    "STDVAR": "stdvar",
    "TOPK": "topk",
    "BOTTOMK": "bottomk",
    "QUANTILE": "quantile",
    "COUNT_VALUES": "count_values",
}

_PARAM_TYPES = {
    "topk": ValueType.SCALAR,
    "bottomk": ValueType.SCALAR,
    "quantile": ValueType.SCALAR,
    "count_values": ValueType.STRING,
}

_MATCH_OPS = {
    "EQL": MatchOp.EQ,
    "NEQ": MatchOp.NE,
    "EQL_REGEX": MatchOp.RE,
    "NEQ_REGEX": MatchOp.NRE,
}

_INSTANT = (ValueType.SCALAR, ValueType.VECTOR)
_PRECEDING = "must be preceded by an instant vector selector or range vector selector or a subquery"


@v_args(inline=True)
class _Builder(Transformer[Token, object]):
    """One callback per grammar rule (or alias): builds and type-checks a node.

    Stateless, so the one instance inside the cached parser serves every thread.
    """

    def binary(self, lhs: _Part, op_token: Token, modifiers: _BinaryModifiers, rhs: _Part) -> _Part:
        op = _BINARY_OPS[op_token.type]
        bool_token, matching = modifiers
        if bool_token is not None and op not in COMPARISON_OPS:
            raise _Rejected(
                "bool modifier can only be used on comparison operators", _start(bool_token)
            )
        for side in (lhs, rhs):
            if side.type not in _INSTANT:
                raise _Rejected(
                    "binary expression must contain only scalar and instant vector types,"
                    f" got {_TYPE_NAMES[side.type]}",
                    side.pos,
                )
        scalars = lhs.type is rhs.type is ValueType.SCALAR
        if op in COMPARISON_OPS and bool_token is None and scalars:
            raise _Rejected("comparisons between scalars must use bool modifier", _start(op_token))
        vectors = lhs.type is rhs.type is ValueType.VECTOR
        if op in SET_OPS and not vectors:
            raise _Rejected(
                f'set operator "{op}" not allowed in binary scalar expression', _start(op_token)
            )
        if matching is not None and not vectors:
            raise _Rejected(
                "vector matching only allowed between instant vectors", _start(matching.token)
            )
        expr = ast.BinaryExpr(
            op,
            lhs.expr,
            rhs.expr,
            return_bool=bool_token is not None,
            matching=_vector_matching(op, matching) if vectors else None,
            pos=lhs.pos,
        )
        return _part(expr, ValueType.SCALAR if scalars else ValueType.VECTOR, lhs, rhs)

    def bin_mod(self, bool_token: Token | None, matching: _Matching | None) -> _BinaryModifiers:
        return _BinaryModifiers(bool_token, matching)

    def matching(
        self, keyword: Token, labels: tuple[Token, ...], group: _Group | None
    ) -> _Matching:
        return _Matching(keyword, labels, group)

    def group(self, keyword: Token, include: tuple[Token, ...] | None) -> _Group:
        return _Group(keyword, include or ())

    def unary(self, sign: Token, operand: _Part) -> _Part:
        if operand.type not in _INSTANT:
            raise _Rejected(
                "unary expression only allowed on expressions of type scalar or instant vector,"
                f" got {_TYPE_NAMES[operand.type]}",
                _start(sign),
            )
        if sign.type == "ADD":
            return operand
        if isinstance(operand.expr, ast.NumberLiteral) and not operand.parenthesised:
            return _part(ast.NumberLiteral(-operand.expr.value, pos=_start(sign)), operand.type)
        return _part(ast.UnaryExpr(operand.expr, pos=_start(sign)), operand.type, operand)

    def matrix(self, target: _Part, bracket: Token, range_token: Token) -> _Part:
        vector = target.expr
        if not isinstance(vector, ast.VectorSelector) or target.parenthesised:
            raise _Rejected("ranges only allowed for vector selectors", _start(bracket))
        if vector.offset_us:
            raise _Rejected("no offset modifiers allowed before range", _start(bracket))
        if vector.at is not None:
            raise _Rejected("no @ modifiers allowed before range", _start(bracket))
        expr = ast.MatrixSelector(vector, _duration_us(range_token), pos=vector.pos)
        return _part(expr, ValueType.MATRIX)

    def subquery(
        self, target: _Part, bracket: Token, range_token: Token, step_token: Token | None
    ) -> _Part:
        if target.type is not ValueType.VECTOR:
            raise _Rejected(
                f"subquery is only allowed on instant vector, got {_TYPE_NAMES[target.type]}",
                _start(bracket),
            )
        step_us = None if step_token is None else _duration_us(step_token)
        expr = ast.Subquery(target.expr, _duration_us(range_token), step_us, pos=target.pos)
        return _part(expr, ValueType.MATRIX, target)

    def offset(self, target: _Part, keyword: Token, minus: Token | None, duration: Token) -> _Part:
        offset_us = -_duration_us(duration) if minus is not None else _duration_us(duration)
        if not target.parenthesised:
            match target.expr:
                case ast.VectorSelector() | ast.Subquery() as expr if not expr.offset_us:
                    return replace(target, expr=replace(expr, offset_us=offset_us))
                case ast.MatrixSelector() as expr if not expr.vector.offset_us:
                    vector = replace(expr.vector, offset_us=offset_us)
                    return replace(target, expr=replace(expr, vector=vector))
                case ast.VectorSelector() | ast.Subquery() | ast.MatrixSelector():
                    raise _Rejected("offset may not be set multiple times", _start(keyword))
        raise _Rejected(f"offset modifier {_PRECEDING}", _start(keyword))

    def at(self, target: _Part, keyword: Token, at: ast.AtModifier) -> _Part:
        if not target.parenthesised:
            match target.expr:
                case ast.VectorSelector() | ast.Subquery() as expr if expr.at is None:
                    return replace(target, expr=replace(expr, at=at))
                case ast.MatrixSelector() as expr if expr.vector.at is None:
                    vector = replace(expr.vector, at=at)
                    return replace(target, expr=replace(expr, vector=vector))
                case ast.VectorSelector() | ast.Subquery() | ast.MatrixSelector():
                    raise _Rejected("@ <timestamp> may not be set multiple times", _start(keyword))
        raise _Rejected(f"@ modifier {_PRECEDING}", _start(keyword))

    def at_number(self, sign: Token | None, number: Token) -> ast.AtModifier:
        if number.type == "NUMBER" and _INTEGER_BASE.match(number):
            seconds = Decimal(_parse_integer(number))
        else:
            seconds = Decimal(number)  # Decimal reads "1.5", "1e3", "Inf" and "NaN" exactly.
        if sign is not None and sign.type == "SUB":
            seconds = -seconds
        if not seconds.is_finite():
            raise _Rejected("@ modifier time must be finite", _start(number))
        if abs(seconds) >= _MAX_AT_SECONDS:
            raise _Rejected("timestamp out of bounds for @ modifier", _start(number))
        return ast.AtModifier("time", round(seconds * 1_000_000))

    def at_bound(self, bound: Token) -> ast.AtModifier:
        return ast.AtModifier("start" if bound.type == "START" else "end")

    def number(self, token: Token) -> _Part:
        return _part(ast.NumberLiteral(_number_value(token), pos=_start(token)), ValueType.SCALAR)

    def string(self, token: Token) -> _Part:
        return _part(ast.StringLiteral(_unquote(token), pos=_start(token)), ValueType.STRING)

    def paren(self, lpar: Token, inner: _Part) -> _Part:
        return replace(inner, pos=_start(lpar), parenthesised=True)

    def named_selector(self, name: Token, braces: _Matchers | None) -> _Part:
        matchers = braces.matchers if braces is not None else ()
        for matcher in matchers:
            if matcher.name == "__name__":
                raise _Rejected(
                    f'metric name must not be set twice: "{name}" or "{matcher.value}"',
                    _start(name),
                )
        name_matcher = ast.Matcher("__name__", MatchOp.EQ, str(name))
        expr = ast.VectorSelector((name_matcher, *matchers), pos=_start(name))
        return _part(expr, ValueType.VECTOR)

    def bare_selector(self, braces: _Matchers) -> _Part:
        if all(_matches_empty(matcher) for matcher in braces.matchers):
            raise _Rejected(
                "vector selector must contain at least one non-empty matcher",
                _start(braces.brace),
            )
        expr = ast.VectorSelector(braces.matchers, pos=_start(braces.brace))
        return _part(expr, ValueType.VECTOR)

    def matchers(self, brace: Token, *matchers: ast.Matcher | None) -> _Matchers:
        return _Matchers(brace, tuple(m for m in matchers if m is not None))

    def matcher(self, name: Token, op_token: Token, value_token: Token) -> ast.Matcher:
        op, value = _MATCH_OPS[op_token.type], _unquote(value_token)
        if op in (MatchOp.RE, MatchOp.NRE):
            try:
                matcher_regex(value)
            except RegexError as err:
                raise _Rejected(
                    f"invalid regular expression {_go_quote(value)}: {err}", _start(value_token)
                ) from None
        return ast.Matcher(str(name), op, value)

    def call_args(self, *items: _Part | Token | None) -> tuple[_Part, ...]:
        if items and isinstance(items[-1], Token):
            raise _Rejected("trailing commas not allowed in function call args", _start(items[-1]))
        return tuple(item for item in items if isinstance(item, _Part))

    def call(self, name: Token, args: tuple[_Part, ...]) -> _Part:
        signature = FUNCTIONS.get(name)
        if signature is None:
            raise _Rejected(f'unknown function with name "{name}"', _start(name))
        most = None if signature.repeat_last else len(signature.args)
        least = len(signature.args) - signature.optional
        if least == most and len(args) != least:
            problem = f"expected {least}"
        elif len(args) < least:
            problem = f"expected at least {least}"
        elif most is not None and len(args) > most:
            problem = f"expected at most {most}"
        else:
            problem = ""
        if problem:
            raise _Rejected(
                f'{problem} argument(s) in call to "{name}", got {len(args)}', _start(name)
            )
        for index, arg in enumerate(args):
            wanted = signature.args[min(index, len(signature.args) - 1)]
            if arg.type is not wanted:
                raise _Rejected(
                    f'expected type {_TYPE_NAMES[wanted]} in call to function "{name}",'
                    f" got {_TYPE_NAMES[arg.type]}",
                    arg.pos,
                )
        expr = ast.Call(str(name), tuple(arg.expr for arg in args), pos=_start(name))
        return _part(expr, signature.returns, *args)

    def grouping(self, keyword: Token, labels: tuple[Token, ...]) -> _Grouping:
        return _Grouping(keyword.type == "WITHOUT", labels)

    def aggregate_grouped_first(
        self, op_token: Token, grouping: _Grouping, args: tuple[_Part, ...]
    ) -> _Part:
        return self.aggregate(op_token, args, grouping)

    def aggregate(
        self, op_token: Token, args: tuple[_Part, ...], grouping: _Grouping | None
    ) -> _Part:
        op = _AGGREGATE_OPS[op_token.type]
        wanted_count = 2 if op in _PARAM_TYPES else 1
        if len(args) != wanted_count:
            raise _Rejected(
                "wrong number of arguments for aggregate expression provided,"
                f" expected {wanted_count}, got {len(args)}",
                _start(op_token),
            )
        *params, operand = args
        if operand.type is not ValueType.VECTOR:
            raise _Rejected(
                "expected type instant vector in aggregation expression,"
                f" got {_TYPE_NAMES[operand.type]}",
                operand.pos,
            )
        for param in params:
            if param.type is not _PARAM_TYPES[op]:
                raise _Rejected(
                    f"expected type {_TYPE_NAMES[_PARAM_TYPES[op]]} in aggregation parameter,"
                    f" got {_TYPE_NAMES[param.type]}",
                    param.pos,
                )
        expr = ast.AggregateExpr(
            op,
            operand.expr,
            params[0].expr if params else None,
            grouping=tuple(map(str, grouping.labels)) if grouping else (),
            without=grouping.without if grouping else False,
            pos=_start(op_token),
        )
        return _part(expr, ValueType.VECTOR, *args)

    def label_list(self, *labels: Token | None) -> tuple[Token, ...]:
        return tuple(label for label in labels if label is not None)


def _vector_matching(op: ast.BinaryOp, matching: _Matching | None) -> ast.VectorMatching:
    """The matching of a vector-vector operation: one-to-one unless grouped, and
    always many-to-many for set operators (which refuse grouping)."""
    on = matching is not None and matching.token.type == "ON"
    labels = tuple(map(str, matching.labels)) if matching is not None else ()
    group = matching.group if matching is not None else None
    if group is None:
        return ast.VectorMatching("many-to-many" if op in SET_OPS else "one-to-one", on, labels)
    if op in SET_OPS:
        raise _Rejected(f'no grouping allowed for "{op}" operation', _start(group.token))
    if on:
        for label in group.include:
            if label in labels:
                raise _Rejected(
                    f'label "{label}" must not occur in ON and GROUP clause at once',
                    _start(label),
                )
    return ast.VectorMatching(
        "many-to-one" if group.token.type == "GROUP_LEFT" else "one-to-many",
        on,
        labels,
        tuple(map(str, group.include)),
    )


def _matches_empty(matcher: ast.Matcher) -> bool:
    """Whether `matcher` accepts a missing label; a selector of only such matchers
    would select every series, which Prometheus refuses."""
    match matcher.op:
        case MatchOp.EQ:
            return matcher.value == ""
        case MatchOp.NE:
            return matcher.value != ""
        case MatchOp.RE:
            return matcher_regex(matcher.value).matches("")
        case MatchOp.NRE:
            return not matcher_regex(matcher.value).matches("")


_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?"
)
_DURATION_UNITS_US = (
    365 * 86_400_000_000,
    7 * 86_400_000_000,
    86_400_000_000,
    3_600_000_000,
    60_000_000,
    1_000_000,
    1_000,
)
_MAX_US = 2**63 - 1
_MAX_AT_SECONDS = Decimal(2**63) / 1_000_000


def _duration_us(token: Token) -> int:
    """A duration literal in microseconds: units from `y` down to `ms`, each at most
    once and in that order (Prometheus's `model.ParseDuration`), never zero."""
    match = _DURATION.fullmatch(token)
    if match is None:
        raise _Rejected(f'not a valid duration string: "{token}"', _start(token))
    total = sum(
        int(count) * unit
        for count, unit in zip(match.groups(), _DURATION_UNITS_US, strict=True)
        if count is not None
    )
    if total == 0:
        raise _Rejected("duration must be greater than 0", _start(token))
    if total > _MAX_US:
        raise _Rejected(f'duration out of range: "{token}"', _start(token))
    return total


_INTEGER_BASE = re.compile(r"0[xX]|0[0-7]+$")


def _parse_integer(text: str) -> int:
    """Hex, or octal for a leading zero: Go's `ParseInt(text, 0, 64)`, which
    Prometheus tries before `ParseFloat` (so `010` is 8, as in Prometheus)."""
    return int(text, 16) if text[1] in "xX" else int(text, 8)


def _number_value(token: Token) -> float:
    """A number literal's value; one too large for a float is refused, as Go's
    `ParseFloat` refuses it, rather than read as infinity."""
    try:
        value = float(_parse_integer(token)) if _INTEGER_BASE.match(token) else float(token)
    except OverflowError:  # A huge hex or octal integer.
        value = math.inf
    if math.isinf(value) and token.type == "NUMBER":
        raise _Rejected(f'number out of range: "{token}"', _start(token))
    return value


_ESCAPE = re.compile(
    r"\\(?:[abfnrtv\\'\"]|x[0-9a-fA-F]{2}|[0-7]{3}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})"
)
_SIMPLE_ESCAPES = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    "'": b"'",
    '"': b'"',
}


def _unquote(token: Token) -> str:
    """A string literal's value, with Go's escapes in "…" and '…'; `…` is raw.

    `\\x` and octal escapes are bytes, so the result is decoded as UTF-8 at the end.
    """
    quote, body = token[0], token[1:-1]
    if quote == "`" or "\\" not in body:
        try:
            body.encode("utf-8")
        except UnicodeEncodeError:
            raise _Rejected("invalid UTF-8 in string", _start(token)) from None
        return body
    decoded = bytearray()
    start = 0
    while (backslash := body.find("\\", start)) >= 0:
        decoded += body[start:backslash].encode("utf-8", "surrogatepass")
        escape = _ESCAPE.match(body, backslash)
        where = _start(token) + 1 + backslash
        if escape is None or (escape[0][1] in "'\"" and escape[0][1] != quote):
            raise _Rejected(f'unknown escape sequence "{body[backslash : backslash + 2]}"', where)
        kind, digits = escape[0][1], escape[0][2:]
        if kind in "xuU01234567":
            code = int(kind + digits, 8) if kind.isdigit() else int(digits, 16)
            if kind in "uU":
                if code > 0x10FFFF or 0xD800 <= code < 0xE000:
                    raise _Rejected("escape sequence is an invalid Unicode code point", where)
                decoded += chr(code).encode("utf-8")
            elif code > 0xFF:
                raise _Rejected("escape sequence is an invalid Unicode code point", where)
            else:
                decoded.append(code)
        else:
            decoded += _SIMPLE_ESCAPES[kind]
        start = escape.end()
    decoded += body[start:].encode("utf-8", "surrogatepass")
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise _Rejected("invalid UTF-8 in string", _start(token)) from None


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# How a syntax error names what the parser would have accepted.
_EXPRESSION_START = frozenset(
    {"METRIC_NAME", "NUMBER", "INF", "NAN", "STRING", "LPAR", "LBRACE", "ADD", "SUB"}
    | set(_AGGREGATE_OPS)
)
_OPERATORS = frozenset(_BINARY_OPS)
_INFIX_ONLY = _OPERATORS - {"ADD", "SUB", "NEQ"}
_BINARY_MODIFIERS = frozenset({"BOOL", "ON", "IGNORING", "GROUP_LEFT", "GROUP_RIGHT"})
_POSTFIX = frozenset({"LSQB", "OFFSET", "AT", "LBRACE", "LPAR"})
_CLOSERS = frozenset({"RPAR", "RBRACE", "RSQB"})
_PHRASES = {
    "LABEL_NAME": "a label name",
    "STRING": "a string",
    "DURATION": "a duration",
    "NUMBER": "a number",
    "EQL": '"="',
    "NEQ": '"!="',
    "EQL_REGEX": '"=~"',
    "NEQ_REGEX": '"!~"',
    "START": '"start()"',
    "END": '"end()"',
    "BY": '"by"',
    "WITHOUT": '"without"',
    "BOOL": '"bool"',
    "ON": '"on"',
    "IGNORING": '"ignoring"',
    "GROUP_LEFT": '"group_left"',
    "GROUP_RIGHT": '"group_right"',
    "LPAR": '"("',
    "LBRACE": '"{"',
    "LSQB": '"["',
    "COLON": '":"',
    "COMMA": '","',
    "RSQB": '"]"',
    "RBRACE": '"}"',
    "RPAR": '")"',
}
_TOKEN_KINDS = {
    "METRIC_NAME": "identifier",
    "LABEL_NAME": "identifier",
    "NUMBER": "number",
    "INF": "number",
    "NAN": "number",
    "DURATION": "duration",
}


def _syntax_error(err: UnexpectedInput, query: str) -> ParseError:
    """Lark's error in PromQL terms: what was found where, and what could have been."""
    if isinstance(err, UnexpectedToken):
        token = err.token
        at_end = token.type == "$END"
        position = len(query) if at_end else _start(token)
        found = "end of input" if at_end else _describe_token(token)
        expected = _describe_expected(set(err.accepts or err.expected), at_end)
    elif isinstance(err, UnexpectedCharacters):
        position = err.pos_in_stream or 0
        char = query[position]
        if char in "\"'":
            return ParseError("unterminated quoted string", position, query)
        if char == "`":
            return ParseError("unterminated raw string", position, query)
        if char.isdigit() or char == ".":
            run = re.match(r"[\w.:]*", query[position:])
            bad = run[0] if run else char
            return ParseError(f'bad number or duration syntax: "{bad}"', position, query)
        found = f"character {char!r}"
        expected = _describe_expected(set(err.allowed or ()), at_end=False)
    else:  # Not raised by the LALR parser; kept so no Lark message leaks out.
        return ParseError("syntax error", min(getattr(err, "pos_in_stream", 0), len(query)), query)
    message = f"unexpected {found}" + (f", expected {expected}" if expected else "")
    return ParseError(message, position, query)


def _describe_token(token: Token) -> str:
    text = token if len(token) <= 40 else token[:37] + "..."
    if token.type == "STRING":
        return f"string {text}"
    kind = _TOKEN_KINDS.get(token.type)
    return f'{kind} "{text}"' if kind else f'"{text}"'


def _describe_expected(names: set[str], at_end: bool) -> str:
    phrases = []
    if "METRIC_NAME" in names:
        phrases.append("an expression")
        names -= _EXPRESSION_START | _BINARY_MODIFIERS
    if names & _INFIX_ONLY:  # After a complete expression: an operator may follow.
        names -= _OPERATORS | _POSTFIX
        if not (at_end and names & _CLOSERS):
            phrases.append("an operator")
    if names & {"NUMBER", "DURATION"}:
        names -= {"ADD", "SUB", "INF", "NAN"}
    if "LABEL_NAME" in names and "RBRACE" in names:
        phrases.append("a label matcher")
        names.discard("LABEL_NAME")
    phrases += [phrase for name, phrase in _PHRASES.items() if name in names]
    if "$END" in names:
        phrases.append("end of input")
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " or " + phrases[-1]
