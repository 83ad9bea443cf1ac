"""The query engine: PromQL text in, a `QueryResult` out, for one tenant.

parse → plan (tier) → evaluate, where each selector the evaluator meets is
compiled to one SQL statement and run through `storage.selections`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import psycopg

from querylang import ast
from querylang.compiler import Statement, TimeGrid, compile_instant, compile_range
from querylang.errors import BadRequest, QueryLimitExceeded, QueryTimeout
from querylang.evaluator.context import Context
from querylang.evaluator.evaluate import evaluate
from querylang.evaluator.values import RangeVector, Scalar, String, Value, Vector
from querylang.parser import parse
from querylang.planner import Plan, choose_tier
from querylang.result import QueryResult, Series
from querylang.typecheck import value_type
from storage.errors import StatementTimeout
from storage.selections import SelectedSeries, fetch_selection


@dataclass(frozen=True)
class QueryLimits:
    """What one query may use before it fails with a clear error."""

    timeout: timedelta = timedelta(seconds=30)
    max_series: int = 50_000
    max_points: int = 11_000
    max_samples: int = 50_000_000
    lookback: timedelta = timedelta(minutes=5)

    @property
    def lookback_us(self) -> int:
        return self.lookback // timedelta(microseconds=1)


@dataclass
class Explanation:
    """What `explain=true` shows: the tier chosen and every statement run."""

    plan: Plan
    statements: list[Statement] = field(default_factory=list)


class DatabaseSource:
    """The evaluator's sample source: one compiled statement per selector, run on
    one connection, within the query's deadline and sample budget."""

    def __init__(
        self,
        conn: psycopg.Connection,
        tenant_id: str,
        limits: QueryLimits,
        deadline: float,
        explanation: Explanation,
    ) -> None:
        self._conn = conn
        self._tenant_id = tenant_id
        self._limits = limits
        self._deadline = deadline
        self._explanation = explanation
        self._samples = 0

    def instant(
        self, matchers: tuple[ast.Matcher, ...], grid: TimeGrid, lookback_us: int
    ) -> Sequence[SelectedSeries]:
        statement = compile_instant(
            self._tenant_id, matchers, grid, lookback_us, self._limits.max_series + 1
        )
        return self._run(statement)

    def range(
        self, matchers: tuple[ast.Matcher, ...], grid: TimeGrid, range_us: int
    ) -> Sequence[SelectedSeries]:
        statement = compile_range(
            self._tenant_id, matchers, grid, range_us, self._limits.max_series + 1
        )
        return self._run(statement)

    def _run(self, statement: Statement) -> list[SelectedSeries]:
        self._explanation.statements.append(statement)
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise QueryTimeout(_timeout_message(self._limits))
        try:
            found = fetch_selection(
                self._conn, statement.sql, statement.params, timedelta(seconds=remaining)
            )
        except StatementTimeout as exc:
            raise QueryTimeout(_timeout_message(self._limits)) from exc
        if len(found) > self._limits.max_series:
            raise QueryLimitExceeded(
                f"a selector matched more than {self._limits.max_series} series; "
                "narrow it with more label matchers"
            )
        self._samples += sum(len(series.times_us) for series in found)
        if self._samples > self._limits.max_samples:
            raise QueryLimitExceeded(
                f"query would load more than {self._limits.max_samples} samples; "
                "shorten the range or narrow the selectors"
            )
        return found


def _timeout_message(limits: QueryLimits) -> str:
    return f"query timed out after {limits.timeout.total_seconds():g} s"


class QueryEngine:
    """Evaluates PromQL for a tenant against the database."""

    def __init__(self, limits: QueryLimits) -> None:
        self.limits = limits

    def range_query(
        self,
        conn: psycopg.Connection,
        tenant_id: str,
        query: str | ast.Expr,
        start_us: int,
        end_us: int,
        step_us: int,
        explanation: Explanation | None = None,
    ) -> QueryResult:
        """`query` at every step from start to end, as Prometheus's /query_range."""
        steps = self.check_range(start_us, end_us, step_us)
        expr = parse(query) if isinstance(query, str) else query
        kind = value_type(expr)
        if kind not in (ast.ValueType.SCALAR, ast.ValueType.VECTOR):
            raise BadRequest(
                f'invalid expression type "{_type_name(kind)}" for range query, '
                "must be Scalar or instant Vector"
            )
        grid = TimeGrid(start_us, step_us, steps)
        value, plan = self._evaluate(conn, tenant_id, expr, grid, start_us, end_us, explanation)
        times = grid.times_us
        if isinstance(value, Scalar):
            return QueryResult("matrix", [Series((), times, value.values)], (plan.tier,))
        assert isinstance(value, Vector)
        series = [
            Series(labels, times[present], value.values[row][present])
            for row, (labels, present) in enumerate(zip(value.labels, value.present, strict=True))
            if present.any()
        ]
        series.sort(key=lambda s: s.labels)
        return QueryResult("matrix", series, (plan.tier,))

    def check_range(self, start_us: int, end_us: int, step_us: int) -> int:
        """The number of steps of a valid range, or BadRequest saying what is wrong."""
        if end_us < start_us:
            raise BadRequest('invalid parameter "end": end timestamp must not be before start time')
        if step_us <= 0:
            raise BadRequest(
                'invalid parameter "step": zero or negative query resolution step widths '
                "are not accepted. Try a positive integer"
            )
        steps = (end_us - start_us) // step_us + 1
        if steps > self.limits.max_points:
            raise BadRequest(
                f"exceeded maximum resolution of {self.limits.max_points} points per "
                "timeseries. Try decreasing the query resolution (?step=XX)"
            )
        return steps

    def instant_query(
        self,
        conn: psycopg.Connection,
        tenant_id: str,
        query: str | ast.Expr,
        time_us: int,
        explanation: Explanation | None = None,
    ) -> QueryResult:
        """`query` at one time, as Prometheus's /query."""
        expr = parse(query) if isinstance(query, str) else query
        grid = TimeGrid(time_us, 0, 1)
        value, plan = self._evaluate(conn, tenant_id, expr, grid, time_us, time_us, explanation)
        tiers = (plan.tier,)
        stamp = np.array([time_us], dtype=np.int64)
        if isinstance(value, Scalar):
            return QueryResult("scalar", [Series((), stamp, value.values)], tiers)
        if isinstance(value, String):
            return QueryResult("string", [Series((), stamp, np.zeros(1))], tiers, value.value)
        if isinstance(value, RangeVector):
            return QueryResult("matrix", _window_samples(value, time_us), tiers)
        assert isinstance(value, Vector)
        rows = [row for row in range(len(value.labels)) if value.present[row, 0]]
        rows = _instant_order(expr, value, rows)
        series = [Series(value.labels[row], stamp, value.values[row, :1]) for row in rows]
        return QueryResult("vector", series, tiers)

    def _evaluate(
        self,
        conn: psycopg.Connection,
        tenant_id: str,
        expr: ast.Expr,
        grid: TimeGrid,
        start_us: int,
        end_us: int,
        explanation: Explanation | None,
    ) -> tuple[Value, Plan]:
        plan = choose_tier(start_us, end_us, grid.step_us)
        explained = explanation if explanation is not None else Explanation(plan)
        explained.plan = plan
        deadline = time.monotonic() + self.limits.timeout.total_seconds()
        source = DatabaseSource(conn, tenant_id, self.limits, deadline, explained)
        ctx = Context(
            grid, start_us, end_us, self.limits.lookback_us, source, self.limits.max_points * 100
        )
        value = evaluate(expr, ctx)
        if time.monotonic() > deadline:
            raise QueryTimeout(_timeout_message(self.limits))
        return value, plan


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
