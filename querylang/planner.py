"""The planner: which storage tier serves a query, and which raw time range it reads.

Only the raw tier exists until rollups land; the interface already takes the
query's range and step, so coarser tiers slot in without touching callers.
"""

from __future__ import annotations

from dataclasses import dataclass

from querylang import ast


@dataclass(frozen=True)
class Plan:
    """The tier chosen and why, as `explain` shows it."""

    tier: str
    reason: str


def choose_tier(start_us: int, end_us: int, step_us: int) -> Plan:
    """The storage tier for a query over [start, end] at `step`."""
    return Plan("raw", "raw samples: the only tier with data (rollup tiers not built yet)")


@dataclass(frozen=True)
class Extent:
    """The sample times a query reads, and the metrics it reads them from (None: a
    selector without a fixed metric name, so any metric of the tenant)."""

    start_us: int
    end_us: int
    metrics: frozenset[str | None]


def extent(expr: ast.Expr, start_us: int, end_us: int, lookback_us: int) -> Extent:
    """Which samples evaluating `expr` at steps in [start, end] may read, so a late
    write into that range knows which cached results it invalidates."""
    reads: list[tuple[int, int, str | None]] = []
    _walk(expr, start_us, end_us, start_us, end_us, lookback_us, reads)
    if not reads:
        return Extent(start_us, end_us, frozenset())
    return Extent(
        min(low for low, _, _ in reads),
        max(high for _, high, _ in reads),
        frozenset(metric for _, _, metric in reads),
    )


def _window(
    offset_us: int, at: ast.AtModifier | None, low: int, high: int, query: tuple[int, int]
) -> tuple[int, int]:
    if at is not None:
        pinned = {"time": at.time_us, "start": query[0], "end": query[1]}[at.kind]
        low = high = pinned
    return low - offset_us, high - offset_us


def _walk(
    expr: ast.Expr,
    low: int,
    high: int,
    query_start: int,
    query_end: int,
    lookback_us: int,
    reads: list[tuple[int, int, str | None]],
) -> None:
    query = (query_start, query_end)
    match expr:
        case ast.VectorSelector():
            first, last = _window(expr.offset_us, expr.at, low, high, query)
            reads.append((first - lookback_us, last, expr.metric))
        case ast.MatrixSelector():
            vector = expr.vector
            first, last = _window(vector.offset_us, vector.at, low, high, query)
            reads.append((first - expr.range_us, last, vector.metric))
        case ast.Subquery():
            first, last = _window(expr.offset_us, expr.at, low, high, query)
            _walk(expr.expr, first - expr.range_us, last, *query, lookback_us, reads)
        case ast.UnaryExpr():
            _walk(expr.expr, low, high, *query, lookback_us, reads)
        case ast.BinaryExpr():
            _walk(expr.lhs, low, high, *query, lookback_us, reads)
            _walk(expr.rhs, low, high, *query, lookback_us, reads)
        case ast.AggregateExpr():
            if expr.param is not None:
                _walk(expr.param, low, high, *query, lookback_us, reads)
            _walk(expr.expr, low, high, *query, lookback_us, reads)
        case ast.Call():
            for arg in expr.args:
                _walk(arg, low, high, *query, lookback_us, reads)
