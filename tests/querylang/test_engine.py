"""The engine against the real database: limits that fail clearly, and explain."""

from __future__ import annotations

import uuid
from datetime import timedelta

import numpy as np
import psycopg
import pytest

from querylang.engine import QueryEngine
from querylang.errors import QueryLimitExceeded, QueryTimeout
from querylang.explanation import Explanation
from querylang.limits import QueryLimits
from storage import tenants
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey

T0_US = 1_700_000_000_000_000
STEP_US = 15_000_000
NOW_US = T0_US + 3_600_000_000


@pytest.fixture
def tenant_id(conn: psycopg.Connection, tenant: tenants.Tenant) -> str:
    times = T0_US + np.arange(0, 3_600_000_000, 10_000_000, dtype=np.int64)
    series = [
        SeriesSamples(SeriesKey.of("load", {"host": f"h{i}"}), times, np.full(len(times), i * 1.0))
        for i in range(20)
    ]
    SampleWriter(SeriesCatalog()).write(
        conn, SampleBatch(f"engine-{uuid.uuid4()}", tenant.id, series)
    )
    return str(tenant.id)


def _run(conn: psycopg.Connection, tenant_id: str, limits: QueryLimits, query: str) -> int:
    result = QueryEngine(limits).range_query(
        conn, tenant_id, query, T0_US + 600_000_000, T0_US + 3_000_000_000, STEP_US, NOW_US
    )
    return len(result.series)


def test_limits_fail_with_their_own_errors(conn: psycopg.Connection, tenant_id: str) -> None:
    assert _run(conn, tenant_id, QueryLimits(), "load") == 20
    with pytest.raises(QueryLimitExceeded, match="more than 19 series"):
        _run(conn, tenant_id, QueryLimits(max_series=19), "load")
    with pytest.raises(QueryLimitExceeded, match="samples"):
        _run(conn, tenant_id, QueryLimits(max_samples=1_000), "sum(rate(load[5m]))")
    with pytest.raises(QueryTimeout):
        _run(conn, tenant_id, QueryLimits(timeout=timedelta(microseconds=1)), "load")


def test_explain_names_the_tier_and_every_statement(
    conn: psycopg.Connection, tenant_id: str
) -> None:
    explanation = Explanation()
    QueryEngine(QueryLimits()).range_query(
        conn,
        tenant_id,
        'load{host="h1"} / on(host) rate(load{host="h1"}[5m])',
        T0_US + 600_000_000,
        T0_US + 900_000_000,
        STEP_US,
        NOW_US,
        explanation,
    )
    assert explanation.plan is not None
    assert explanation.plan.tiers == ("raw",)
    assert len(explanation.statements) == 2
    instant, window = explanation.statements
    assert "DATE_BIN" in instant.sql and "DATE_BIN" not in window.sql
    assert instant.params["tenant"] == tenant_id
