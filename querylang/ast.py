"""The PromQL abstract syntax tree: a closed set of frozen node types.

Every node carries `pos`, the 0-based offset of its first character in the query
text. Times and durations are integer microseconds, the storage layer's unit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal


class ValueType(enum.Enum):
    """The four PromQL value types an expression evaluates to."""

    SCALAR = "scalar"
    VECTOR = "vector"
    MATRIX = "matrix"
    STRING = "string"


class MatchOp(enum.Enum):
    """A label matcher's operator; regexes are fully anchored."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True)
class Matcher:
    """`name op "value"`; the metric name is the matcher on `__name__`."""

    name: str
    op: MatchOp
    value: str


@dataclass(frozen=True)
class AtModifier:
    """`@ <time>`, `@ start()` or `@ end()`: pins evaluation to one time."""

    kind: Literal["time", "start", "end"]
    time_us: int = 0


@dataclass(frozen=True)
class NumberLiteral:
    value: float
    pos: int = 0


@dataclass(frozen=True)
class StringLiteral:
    value: str
    pos: int = 0


@dataclass(frozen=True)
class VectorSelector:
    """`metric{matchers} offset d @ t`; `matchers` includes the `__name__` matcher
    written as a bare metric name. `offset_us` may be negative."""

    matchers: tuple[Matcher, ...]
    offset_us: int = 0
    at: AtModifier | None = None
    pos: int = 0

    @property
    def metric(self) -> str | None:
        """The metric name when an `__name__="…"` equality pins it."""
        for matcher in self.matchers:
            if matcher.name == "__name__" and matcher.op is MatchOp.EQ:
                return matcher.value
        return None


@dataclass(frozen=True)
class MatrixSelector:
    """`selector[range]`: each series' samples in [t - range, t] (Prometheus 2.x bounds)."""

    vector: VectorSelector
    range_us: int
    pos: int = 0


@dataclass(frozen=True)
class Subquery:
    """`expr[range:step] offset d @ t`; `step_us` None means the default resolution."""

    expr: Expr
    range_us: int
    step_us: int | None
    offset_us: int = 0
    at: AtModifier | None = None
    pos: int = 0


@dataclass(frozen=True)
class UnaryExpr:
    """`-expr` (a leading `+` is dropped by the parser)."""

    expr: Expr
    pos: int = 0


@dataclass(frozen=True)
class VectorMatching:
    """`on(...)`/`ignoring(...)` with optional `group_left/right(include...)`.

    `card` is the cardinality: one-to-one, many-to-one (group_left),
    one-to-many (group_right) or many-to-many (set operators).
    """

    card: Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"]
    on: bool = False
    labels: tuple[str, ...] = ()
    include: tuple[str, ...] = ()


BinaryOp = Literal[
    "+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or", "unless"
]
COMPARISON_OPS: frozenset[str] = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPS: frozenset[str] = frozenset({"and", "or", "unless"})


@dataclass(frozen=True)
class BinaryExpr:
    """`lhs op [bool] [matching] rhs`. `matching` is set when both sides are vectors
    (set operators always get many-to-many)."""

    op: BinaryOp
    lhs: Expr
    rhs: Expr
    return_bool: bool = False
    matching: VectorMatching | None = None
    pos: int = 0


AggregateOp = Literal[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
]


@dataclass(frozen=True)
class AggregateExpr:
    """`op [by|without (labels)] ([param,] expr)`."""

    op: AggregateOp
    expr: Expr
    param: Expr | None = None
    grouping: tuple[str, ...] = ()
    without: bool = False
    pos: int = 0


@dataclass(frozen=True)
class Call:
    """`func(args...)`; `func` is a name from `querylang.functions.FUNCTIONS`."""

    func: str
    args: tuple[Expr, ...]
    pos: int = 0


Expr = (
    NumberLiteral
    | StringLiteral
    | VectorSelector
    | MatrixSelector
    | Subquery
    | UnaryExpr
    | BinaryExpr
    | AggregateExpr
    | Call
)
