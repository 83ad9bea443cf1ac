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
from querylang.answers import check_range_expr, instant_answer, range_answer
from querylang.compiler import compile_series_count
from querylang.database_source import DatabaseSource
from querylang.errors import BadRequest, QueryTimeout
from querylang.evaluator.context import Context
from querylang.evaluator.evaluate import evaluate
from querylang.evaluator.values import Scalar, Value, Vector, unique
from querylang.explanation import Explanation
from querylang.limits import QueryLimits
from querylang.matcher_values import Resolve
from querylang.parser import parse
from querylang.planner import (
    AUTO,
    Plan,
    Segment,
    Storage,
    TierCoverage,
    check_tier,
    extent,
    plan,
    raw_plan,
    selector_reads,
)
from querylang.result import Labels, QueryResult
from querylang.timegrid import TimeGrid
from storage.rollups import dirty_buckets, read_watermarks
from storage.selections import fetch_rows
from storage.tiers import RAW, ROLLUP_TIERS


@dataclass(frozen=True)
class TierPolicy:
    """How the planner may use rollup tiers: each tier's retention (µs; raw, 1m, 1h,
    1d), the buckets a step needs at least, and when raw samples are affordable: the
    raw samples a query may read exactly (0: prefer rollups whenever they fit) at the
    sample interval assumed for estimates."""

    retention_us: dict[str, int]
    points_per_step: float = 1.0
    raw_sample_budget: int = 0
    nominal_interval_us: int = 10_000_000


class QueryEngine:
    """Evaluates PromQL for a tenant against the database. It never reads the clock:
    callers pass `now_us`, from which tier retention is measured."""

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
        now_us: int,
        explanation: Explanation | None = None,
        tier: str = AUTO,
    ) -> QueryResult:
        """`query` at every step from start to end, as Prometheus's /query_range."""
        steps = self.check_range(start_us, end_us, step_us)
        expr = parse(query) if isinstance(query, str) else query
        check_range_expr(expr)
        grid = TimeGrid(start_us, step_us, steps)
        value, chosen = self._evaluate(
            conn, tenant_id, expr, grid, (start_us, end_us), now_us, explanation, tier
        )
        return range_answer(value, grid, chosen.tiers, chosen.approximations)

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
        now_us: int,
        explanation: Explanation | None = None,
        tier: str = AUTO,
    ) -> QueryResult:
        """`query` at one time, as Prometheus's /query."""
        expr = parse(query) if isinstance(query, str) else query
        grid = TimeGrid(time_us, 0, 1)
        value, chosen = self._evaluate(
            conn, tenant_id, expr, grid, (time_us, time_us), now_us, explanation, tier
        )
        return instant_answer(expr, value, time_us, chosen.tiers, chosen.approximations)

    def plan(
        self,
        conn: psycopg.Connection,
        tenant_id: str,
        expr: ast.Expr,
        grid: TimeGrid,
        now_us: int,
        tier: str = AUTO,
        explanation: Explanation | None = None,
        resolve: Resolve | None = None,
    ) -> Plan:
        """Which tier serves each step (raw throughout without a tier policy);
        `resolve` resolves regex matchers (by default, through a DatabaseSource)."""
        check_tier(tier)
        if self.tiers is None:
            return raw_plan(grid.count, "raw samples: rollup tiers are not enabled")
        explained = explanation if explanation is not None else Explanation()
        if resolve is None:
            deadline = time.monotonic() + self.limits.timeout.total_seconds()
            resolve = DatabaseSource(conn, tenant_id, self.limits, deadline, explained).resolve
        facts = _StorageFacts(
            conn, tenant_id, expr, grid, self.limits, self.tiers, explained, resolve
        )
        return plan(
            expr,
            grid,
            facts.storage(),
            now_us,
            self.limits.lookback_us,
            self.tiers.points_per_step,
            tier,
        )

    def _evaluate(
        self,
        conn: psycopg.Connection,
        tenant_id: str,
        expr: ast.Expr,
        grid: TimeGrid,
        query_range: tuple[int, int],
        now_us: int,
        explanation: Explanation | None,
        tier: str,
    ) -> tuple[Value, Plan]:
        deadline = time.monotonic() + self.limits.timeout.total_seconds()
        explained = explanation if explanation is not None else Explanation()
        source = DatabaseSource(conn, tenant_id, self.limits, deadline, explained)
        chosen = self.plan(conn, tenant_id, expr, grid, now_us, tier, explained, source.resolve)
        explained.plan = chosen
        parts = []
        for segment in chosen.segments:
            rollup = ROLLUP_TIERS.get(segment.tier)
            lookback = self.limits.lookback_us
            if rollup is not None:
                lookback = max(lookback, rollup.width_us)
            ctx = Context(
                _segment_grid(grid, segment),
                *query_range,
                lookback,
                source,
                self.limits.max_points * 100,
                rollup,
            )
            parts.append(evaluate(expr, ctx))
        if time.monotonic() > deadline:
            raise QueryTimeout(self.limits.timeout_message())
        return _joined(parts), chosen


class _StorageFacts:
    """What the planner asks of the database for one query: the tiers' watermarks and
    retention, the raw samples the query would read, and the buckets awaiting repair."""

    def __init__(
        self,
        conn: psycopg.Connection,
        tenant_id: str,
        expr: ast.Expr,
        grid: TimeGrid,
        limits: QueryLimits,
        policy: TierPolicy,
        explanation: Explanation,
        resolve: Resolve,
    ) -> None:
        self._conn = conn
        self._tenant_id = tenant_id
        self._expr = expr
        self._grid = grid
        self._limits = limits
        self._policy = policy
        self._explanation = explanation
        self._resolve = resolve

    def storage(self) -> Storage:
        watermarks = read_watermarks(self._conn)
        retention = self._policy.retention_us
        coverage = [TierCoverage(RAW.name, 0, retention.get(RAW.name), None)] + [
            TierCoverage(
                name, tier.width_us, retention.get(name), watermarks[name].materialised_to_us
            )
            for name, tier in ROLLUP_TIERS.items()
            if watermarks[name].materialised_to_us is not None
        ]
        return Storage(
            coverage, self.raw_samples, self.dirty_buckets, self._policy.raw_sample_budget
        )

    def raw_samples(self) -> int:
        """The raw samples the query reads, estimated per selector as the series it
        matches (counted in the catalog, no further than the budget needs) times the
        samples of its span at the nominal interval."""
        budget = self._policy.raw_sample_budget
        total = 0
        reads = selector_reads(
            self._expr, self._grid.start_us, self._grid.end_us, self._limits.lookback_us
        )
        for read in reads:
            per_series = (read.end_us - read.start_us) // self._policy.nominal_interval_us + 1
            statement = compile_series_count(
                self._tenant_id,
                self._resolve(read.selector.matchers),
                read.start_us,
                read.end_us,
                budget // per_series + 1,
            )
            self._explanation.statements.append(statement)
            rows = fetch_rows(self._conn, statement.sql, statement.params, self._limits.timeout)
            total += int(rows[0][0]) * per_series
            if total > budget:
                break
        return total

    def dirty_buckets(self) -> list[int]:
        """The 1m buckets awaiting repair among those the query reads (with a day's
        margin: a coarse bucket holding one is stale too)."""
        reads = extent(self._expr, self._grid.start_us, self._grid.end_us, self._limits.lookback_us)
        if not reads.metrics:
            return []
        margin = 2 * max(tier.width_us for tier in ROLLUP_TIERS.values())
        metrics = None if None in reads.metrics else sorted(m for m in reads.metrics if m)
        return dirty_buckets(
            self._conn, self._tenant_id, metrics, reads.start_us - margin, reads.end_us + margin
        )


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
