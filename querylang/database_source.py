"""The database as the evaluator's sample source: one compiled statement per
selector (after one catalog statement per regex matcher, see matcher_values.py), run
through `storage.selections` within the query's deadline and limits."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import psycopg

from querylang import ast
from querylang.compiler import (
    ROLLUP_COLUMNS,
    CatalogMatcher,
    Statement,
    compile_instant,
    compile_range,
    compile_rollup,
)
from querylang.errors import QueryLimitExceeded, QueryTimeout
from querylang.explanation import Explanation
from querylang.limits import QueryLimits
from querylang.matcher_values import MatcherResolver
from querylang.timegrid import TimeGrid
from storage.errors import StatementTimeout
from storage.selections import (
    SelectedColumns,
    SelectedSeries,
    fetch_columns,
    fetch_rows,
    fetch_selection,
)
from storage.tiers import Tier


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
        self._resolver = MatcherResolver(tenant_id, self._catalog_rows, limits, deadline)

    def resolve(self, matchers: tuple[ast.Matcher, ...]) -> tuple[CatalogMatcher, ...]:
        """The selector's matchers with its regex matchers resolved against the catalog
        (once per distinct selector and query)."""
        return self._resolver.resolve(matchers)

    def instant(
        self, matchers: tuple[ast.Matcher, ...], grid: TimeGrid, lookback_us: int
    ) -> Sequence[SelectedSeries]:
        statement = compile_instant(
            self._tenant_id, self.resolve(matchers), grid, lookback_us, self._limits.max_series + 1
        )
        return self._run(statement)

    def range(
        self, matchers: tuple[ast.Matcher, ...], grid: TimeGrid, range_us: int
    ) -> Sequence[SelectedSeries]:
        statement = compile_range(
            self._tenant_id, self.resolve(matchers), grid, range_us, self._limits.max_series + 1
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
            self.resolve(matchers),
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

    def _catalog_rows(self, statement: Statement) -> list[tuple[Any, ...]]:
        return self._fetch(
            lambda timeout: fetch_rows(self._conn, statement.sql, statement.params, timeout),
            statement,
        )

    def _fetch(self, fetch: Callable[[timedelta], list[_Row]], statement: Statement) -> list[_Row]:
        self._explanation.statements.append(statement)
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise QueryTimeout(self._limits.timeout_message())
        try:
            return fetch(timedelta(seconds=remaining))
        except StatementTimeout as exc:
            raise QueryTimeout(self._limits.timeout_message()) from exc

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
_Row = TypeVar("_Row")
