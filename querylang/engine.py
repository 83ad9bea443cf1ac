"""The query engine: PromQL text in, a `QueryResult` out, for one tenant.

parse → plan (tier) → evaluate, where each selector the evaluator meets is
compiled to one SQL statement and run through `storage.selections`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

import numpy as np
import psycopg

from querylang import ast
from querylang.compiler import (
    ROLLUP_COLUMNS,
    Statement,
    TimeGrid,
    compile_instant,
    compile_range,
    compile_rollup,
)
from querylang.errors import BadRequest, QueryLimitExceeded, QueryTimeout
from querylang.evaluator.context import Context
from querylang.evaluator.evaluate import evaluate
from querylang.evaluator.values import RangeVector, Scalar, String, Value, Vector, unique
from querylang.parser import parse
from querylang.planner import RAW, Plan, Segment, TierCoverage, plan, raw_plan
from querylang.result import Labels, QueryResult, Series
from querylang.typecheck import value_type
from storage.errors import StatementTimeout
from storage.rollups import TIERS, Tier, read_watermarks
from storage.selections import SelectedColumns, SelectedSeries, fetch_columns, fetch_selection


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


@dataclass(frozen=True)
class TierPolicy:
    """How the planner may use rollup tiers: each tier's retention (µs; raw, 1m, 1h,
    1d) and the buckets a step needs at least."""

    retention_us: dict[str, int]
    points_per_step: float = 1.0


@dataclass
class Explanation:
    """What `explain=true` shows: the plan and every statement run."""

    plan: Plan | None = None
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

    def rollup(
        self,
        matchers: tuple[ast.Matcher, ...],
        tier: Tier,
        columns: tuple[str, ...],
        low_us: int,
        high_us: int,
    ) -> Sequence[SelectedColumns]:
        statement = compile_rollup(
            self._tenant_id,
            matchers,
            tier.view,
            columns,
            low_us,
            high_us,
            self._limits.max_series + 1,
        )
        kinds = "".join(ROLLUP_COLUMNS[name] for name in ("bucket", *columns))
        found = self._fetch(
            lambda timeout: fetch_columns(
                self._conn, statement.sql, statement.params, timeout, kinds
            ),
            statement,
        )
        return self._counted(found, [len(series.columns[0]) for series in found])

    def _run(self, statement: Statement) -> list[SelectedSeries]:
        found = self._fetch(
            lambda timeout: fetch_selection(self._conn, statement.sql, statement.params, timeout),
            statement,
        )
        return self._counted(found, [len(series.times_us) for series in found])

    def _fetch(
        self, fetch: Callable[[timedelta], list[_Found]], statement: Statement
    ) -> list[_Found]:
        self._explanation.statements.append(statement)
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise QueryTimeout(_timeout_message(self._limits))
        try:
            return fetch(timedelta(seconds=remaining))
        except StatementTimeout as exc:
            raise QueryTimeout(_timeout_message(self._limits)) from exc

    def _counted(self, found: list[_Found], points: list[int]) -> list[_Found]:
        """`found`, unless it breaks the series or sample limit."""
        if len(found) > self._limits.max_series:
            raise QueryLimitExceeded(
                f"a selector matched more than {self._limits.max_series} series; "
                "narrow it with more label matchers"
            )
        self._samples += sum(points)
        if self._samples > self._limits.max_samples:
            raise QueryLimitExceeded(
                f"query would load more than {self._limits.max_samples} samples; "
                "shorten the range or narrow the selectors"
            )
        return found


_Found = TypeVar("_Found", SelectedSeries, SelectedColumns)


def _timeout_message(limits: QueryLimits) -> str:
    return f"query timed out after {limits.timeout.total_seconds():g} s"


class QueryEngine:
    """Evaluates PromQL for a tenant against the database."""

    def __init__(self, limits: QueryLimits, tiers: TierPolicy | None = None) -> None:
        """Without a tier policy every query reads raw samples."""
        self.limits = limits
        self.tiers = tiers

    def range_query(
        self,
        conn: psycopg.Connection,
        tenant_id: str,
        query: str | ast.Expr,
        start_us: int,
        end_us: int,
        step_us: int,
        explanation: Explanation | None = None,
        now_us: int | None = None,
        include_late_data: bool = False,
    ) -> QueryResult:
        """`query` at every step from start to end, as Prometheus's /query_range.
        `now_us` (default: the clock) is what tier retention is measured from."""
        steps = self.check_range(start_us, end_us, step_us)
        expr = parse(query) if isinstance(query, str) else query
        kind = value_type(expr)
        if kind not in (ast.ValueType.SCALAR, ast.ValueType.VECTOR):
            raise BadRequest(
                f'invalid expression type "{_type_name(kind)}" for range query, '
                "must be Scalar or instant Vector"
            )
        grid = TimeGrid(start_us, step_us, steps)
        value, plan = self._evaluate(
            conn, tenant_id, expr, grid, (start_us, end_us), explanation, now_us, include_late_data
        )
        times = grid.times_us
        tiers, notes = plan.tiers, plan.approximations
        if isinstance(value, Scalar):
            return QueryResult("matrix", [Series((), times, value.values)], tiers, notes=notes)
        assert isinstance(value, Vector)
        series = [
            Series(labels, times[present], value.values[row][present])
            for row, (labels, present) in enumerate(zip(value.labels, value.present, strict=True))
            if present.any()
        ]
        series.sort(key=lambda s: s.labels)
        return QueryResult("matrix", series, tiers, notes=notes)

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
        now_us: int | None = None,
        include_late_data: bool = False,
    ) -> QueryResult:
        """`query` at one time, as Prometheus's /query."""
        expr = parse(query) if isinstance(query, str) else query
        grid = TimeGrid(time_us, 0, 1)
        value, plan = self._evaluate(
            conn, tenant_id, expr, grid, (time_us, time_us), explanation, now_us, include_late_data
        )
        tiers, notes = plan.tiers, plan.approximations
        stamp = np.array([time_us], dtype=np.int64)
        if isinstance(value, Scalar):
            return QueryResult("scalar", [Series((), stamp, value.values)], tiers, notes=notes)
        if isinstance(value, String):
            return QueryResult(
                "string", [Series((), stamp, np.zeros(1))], tiers, value.value, notes=notes
            )
        if isinstance(value, RangeVector):
            return QueryResult("matrix", _window_samples(value, time_us), tiers, notes=notes)
        assert isinstance(value, Vector)
        rows = [row for row in range(len(value.labels)) if value.present[row, 0]]
        rows = _instant_order(expr, value, rows)
        series = [Series(value.labels[row], stamp, value.values[row, :1]) for row in rows]
        return QueryResult("vector", series, tiers, notes=notes)

    def plan(
        self,
        conn: psycopg.Connection,
        expr: ast.Expr,
        grid: TimeGrid,
        now_us: int | None = None,
        include_late_data: bool = False,
    ) -> Plan:
        """Which tier serves each step (raw throughout without a tier policy)."""
        if self.tiers is None:
            return raw_plan(grid.count, "raw samples: rollup tiers are not enabled")
        now = int(time.time() * 1e6) if now_us is None else now_us
        watermarks = read_watermarks(conn)
        retention = self.tiers.retention_us
        coverage = [TierCoverage(RAW, 0, retention.get(RAW), None)] + [
            TierCoverage(
                name, tier.width_us, retention.get(name), watermarks[name].materialised_to_us
            )
            for name, tier in TIERS.items()
            if watermarks[name].materialised_to_us is not None
        ]
        return plan(
            expr,
            grid,
            coverage,
            now,
            self.limits.lookback_us,
            self.tiers.points_per_step,
            include_late_data,
        )

    def _evaluate(
        self,
        conn: psycopg.Connection,
        tenant_id: str,
        expr: ast.Expr,
        grid: TimeGrid,
        query_range: tuple[int, int],
        explanation: Explanation | None,
        now_us: int | None,
        include_late_data: bool,
    ) -> tuple[Value, Plan]:
        chosen = self.plan(conn, expr, grid, now_us, include_late_data)
        explained = explanation if explanation is not None else Explanation()
        explained.plan = chosen
        deadline = time.monotonic() + self.limits.timeout.total_seconds()
        source = DatabaseSource(conn, tenant_id, self.limits, deadline, explained)
        parts = []
        for segment in chosen.segments:
            tier = None if segment.tier == RAW else TIERS[segment.tier]
            lookback = self.limits.lookback_us
            if tier is not None:
                lookback = max(lookback, tier.width_us)
            ctx = Context(
                _segment_grid(grid, segment),
                *query_range,
                lookback,
                source,
                self.limits.max_points * 100,
                tier,
            )
            parts.append(evaluate(expr, ctx))
        if time.monotonic() > deadline:
            raise QueryTimeout(_timeout_message(self.limits))
        return _joined(parts), chosen


def _segment_grid(grid: TimeGrid, segment: Segment) -> TimeGrid:
    return TimeGrid(grid.start_us + segment.first_step * grid.step_us, grid.step_us, segment.steps)


def _joined(parts: list[Value]) -> Value:
    """The values of consecutive segments as one value over all their steps: each
    segment's rows padded to every step, then rows of one label set merged."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(part, Scalar) for part in parts):
        return Scalar(np.concatenate([part.values for part in parts]))  # type: ignore[union-attr]
    assert all(isinstance(part, Vector) for part in parts)
    vectors: list[Vector] = parts  # type: ignore[assignment]
    steps = sum(vector.values.shape[1] for vector in vectors)
    labels: list[Labels] = []
    values, present = [], []
    offset = 0
    for vector in vectors:
        width = vector.values.shape[1]
        padded = np.zeros((len(vector.labels), steps))
        padded[:, offset : offset + width] = vector.values
        shown = np.zeros((len(vector.labels), steps), dtype=bool)
        shown[:, offset : offset + width] = vector.present
        labels += vector.labels
        values.append(padded)
        present.append(shown)
        offset += width
    return unique(Vector(labels, np.concatenate(values), np.concatenate(present)))


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
