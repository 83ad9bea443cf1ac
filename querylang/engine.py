"""The query engine: PromQL text in, a `QueryResult` out, for one tenant.

parse → plan (tier) → evaluate, where each selector the evaluator meets is
compiled to one SQL statement and run through `storage.selections`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import psycopg

from querylang import ast
from querylang.database_source import DatabaseSource
from querylang.errors import BadRequest, QueryTimeout
from querylang.evaluator.context import Context
from querylang.evaluator.evaluate import evaluate
from querylang.evaluator.values import RangeVector, Scalar, String, Value, Vector, unique
from querylang.explanation import Explanation
from querylang.limits import QueryLimits
from querylang.parser import parse
from querylang.planner import RAW, Plan, Segment, TierCoverage, plan, raw_plan
from querylang.result import Labels, QueryResult, Series
from querylang.timegrid import TimeGrid
from querylang.typecheck import value_type
from storage.rollups import read_watermarks
from storage.tiers import ROLLUP_TIERS


@dataclass(frozen=True)
class TierPolicy:
    """How the planner may use rollup tiers: each tier's retention (µs; raw, 1m, 1h,
    1d) and the buckets a step needs at least."""

    retention_us: dict[str, int]
    points_per_step: float = 1.0


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
            for name, tier in ROLLUP_TIERS.items()
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
            tier = None if segment.tier == RAW else ROLLUP_TIERS[segment.tier]
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
            raise QueryTimeout(self.limits.timeout_message())
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
