"""The read path as the API and the CLI use it: engine, connections and cache."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from querylang import ast
from querylang.compiler import (
    CatalogMatcher,
    Statement,
    compile_label_names,
    compile_label_values,
    compile_series,
)
from querylang.engine import QueryEngine
from querylang.errors import BadRequest, QueryLimitExceeded
from querylang.explanation import Explanation
from querylang.matcher_values import MatcherResolver
from querylang.parser import parse
from querylang.planner import AUTO, check_tier
from querylang.result import Labels, QueryResult
from querylang.results_cache import ResultsCache
from storage.database import Pool
from storage.priority import lower_thread_priority
from storage.selections import fetch_rows
from storage.tiers import RAW


class QueryService:
    """PromQL range/instant queries (range queries through the results cache) and
    the series metadata Prometheus's API serves, for one tenant at a time."""

    def __init__(
        self, pool: Pool, engine: QueryEngine, cache: ResultsCache | None, nice: int = 0
    ) -> None:
        """`nice` > 0 lowers the CPU priority of threads that evaluate queries."""
        self._pool = pool
        self.engine = engine
        self._cache = cache
        self._nice = nice

    def range_query(
        self,
        tenant_id: str,
        query: str,
        start_us: int,
        end_us: int,
        step_us: int,
        now_us: int,
        use_cache: bool = True,
        explanation: Explanation | None = None,
        include_late_data: bool = False,
        tier: str = AUTO,
    ) -> QueryResult:
        """A range query; its settled past comes from the cache when allowed (never
        with `include_late_data`, which asks for raw samples over rollups, or a forced
        `tier`: raw, 1m, 1h, 1d, or auto for the planner's choice)."""
        lower_thread_priority(self._nice)
        self.engine.check_range(start_us, end_us, step_us)
        expr = parse(query)
        tier = _tier(tier, include_late_data)

        def compute(first_us: int, last_us: int) -> QueryResult:
            with self._pool.connection() as conn:
                return self.engine.range_query(
                    conn,
                    tenant_id,
                    expr,
                    first_us,
                    last_us,
                    step_us,
                    now_us,
                    explanation,
                    tier,
                )

        uncached = explanation is not None or tier != AUTO
        if self._cache is None or not use_cache or uncached:
            return compute(start_us, end_us)
        return self._cache.range_query(
            tenant_id,
            expr,
            start_us,
            end_us,
            step_us,
            now_us,
            compute,
            lookback_us=self.engine.limits.lookback_us,
        )

    def instant_query(
        self,
        tenant_id: str,
        query: str,
        time_us: int,
        now_us: int,
        explanation: Explanation | None = None,
        include_late_data: bool = False,
        tier: str = AUTO,
    ) -> QueryResult:
        """An instant query at `time_us`, planned as of `now_us`."""
        lower_thread_priority(self._nice)
        tier = _tier(tier, include_late_data)
        with self._pool.connection() as conn:
            return self.engine.instant_query(
                conn, tenant_id, query, time_us, now_us, explanation, tier
            )

    def series(
        self, tenant_id: str, selectors: Sequence[str], start_us: int, end_us: int
    ) -> list[Labels]:
        """Label sets of the series any selector matches, seen in [start, end]."""
        if not selectors:
            raise BadRequest("no match[] parameter provided")
        return sorted(self._catalog(tenant_id, selectors, start_us, end_us))

    def label_names(
        self, tenant_id: str, selectors: Sequence[str], start_us: int, end_us: int
    ) -> list[str]:
        """Label names of the tenant's series (those any selector matches, if given)."""
        names = {"__name__"}
        for matchers in self._matchers(tenant_id, selectors, start_us, end_us):
            statement = compile_label_names(tenant_id, matchers, start_us, end_us)
            names.update(row[0] for row in self._read(statement))
        return sorted(names)

    def label_values(
        self, tenant_id: str, name: str, selectors: Sequence[str], start_us: int, end_us: int
    ) -> list[str]:
        """Values of one label across the tenant's series (or those selected)."""
        values: set[str] = set()
        for matchers in self._matchers(tenant_id, selectors, start_us, end_us):
            statement = compile_label_values(tenant_id, name, matchers, start_us, end_us)
            values.update(row[0] for row in self._read(statement))
        return sorted(values)

    def _matchers(
        self, tenant_id: str, selectors: Sequence[str], start_us: int, end_us: int
    ) -> list[tuple[CatalogMatcher, ...]]:
        """Each match[] selector's matchers, its regex matchers resolved against the
        series seen in [start, end]; no selector means every series."""
        parsed = [_selector(text).matchers for text in selectors]
        limits = self.engine.limits
        resolver = MatcherResolver(
            tenant_id,
            self._read,
            limits,
            time.monotonic() + limits.timeout.total_seconds(),
            (start_us, end_us),
        )
        return [resolver.resolve(matchers) for matchers in parsed] or [()]

    def _read(self, statement: Statement) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            return fetch_rows(conn, statement.sql, statement.params, self.engine.limits.timeout)

    def _catalog(
        self, tenant_id: str, selectors: Sequence[str], start_us: int, end_us: int
    ) -> set[Labels]:
        limits = self.engine.limits
        found: set[Labels] = set()
        resolved = self._matchers(tenant_id, selectors, start_us, end_us)
        for text, matchers in zip(selectors, resolved, strict=True):
            statement = compile_series(tenant_id, matchers, start_us, end_us, limits.max_series + 1)
            rows = self._read(statement)
            if len(rows) > limits.max_series:
                raise QueryLimitExceeded(
                    f"match[] {text!r} selects more than {limits.max_series} series"
                )
            for metric, labels in rows:
                found.add(tuple(sorted([("__name__", metric), *labels.items()])))
        return found


def _tier(tier: str, include_late_data: bool) -> str:
    """The tier asked for; `include_late_data` asks for raw samples."""
    check_tier(tier)
    if not include_late_data:
        return tier
    if tier not in (AUTO, RAW.name):
        raise BadRequest(
            f"include_late_data reads raw samples; it cannot be combined with tier={tier}"
        )
    return RAW.name


def _selector(text: str) -> ast.VectorSelector:
    expr = parse(text)
    if not isinstance(expr, ast.VectorSelector):
        raise BadRequest(f"match[] must be a series selector, got {text!r}")
    return expr
