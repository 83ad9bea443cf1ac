"""The query seam of rule evaluation: an instant query at a given time, as a vector.

Like Prometheus's `rules.QueryFunc`, it never reads the clock (the evaluation time
is also what tier retention is measured from), never touches the results cache, and
runs on a connection pool of its own, so alert rules keep evaluating while
dashboards are slow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from querylang import ast
from querylang.engine import QueryEngine
from querylang.errors import BadRequest
from querylang.result import Labels
from storage.database import Pool


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: a series' labels and its value at `time_us`."""

    labels: Labels
    value: float
    time_us: int


class QueryFunc(Protocol):
    """Evaluates `expr` for a tenant at `at_us`; what rule evaluation depends on."""

    def __call__(self, tenant_id: str, expr: str | ast.Expr, at_us: int) -> list[Sample]: ...


class RuleQueries:
    """The QueryFunc on the database: the engine's instant queries on their own pool.
    A scalar answers as one sample without labels (as in Prometheus); a string or
    range vector is a BadRequest."""

    def __init__(self, pool: Pool, engine: QueryEngine) -> None:
        self._pool = pool
        self._engine = engine

    def __call__(self, tenant_id: str, expr: str | ast.Expr, at_us: int) -> list[Sample]:
        with self._pool.connection() as conn:
            result = self._engine.instant_query(conn, tenant_id, expr, at_us, now_us=at_us)
        if result.kind not in ("vector", "scalar"):
            raise BadRequest(f"rule result is not a vector or scalar but a {result.kind}")
        return [
            Sample(series.labels, float(series.values[0]), int(series.times_us[0]))
            for series in result.series
        ]
