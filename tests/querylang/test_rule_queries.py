"""The query seam of rule evaluation against the real database: an instant vector at
the time it is asked for (never the clock's), on a pool of its own."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest

from querylang.errors import BadRequest
from querylang.rule_queries import RuleQueries, Sample
from storage import tenants
from storage.database import Pool
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey
from vigil.settings import Settings
from vigil.wiring import query_engine, rule_queries

T0_US = 1_600_000_000_000_000
MINUTE_US = 60_000_000


@pytest.fixture
def queries(database_url: str, settings: Settings) -> RuleQueries:
    return RuleQueries(Pool(database_url, max_size=2), query_engine(settings))


@pytest.fixture
def tenant_id(conn: psycopg.Connection, tenant: tenants.Tenant) -> str:
    times = T0_US + np.arange(0, 10 * MINUTE_US, 10_000_000, dtype=np.int64)
    series = [
        SeriesSamples(SeriesKey.of("up", {"job": job}), times, np.full(len(times), value))
        for job, value in (("api", 1.0), ("db", 0.0))
    ]
    SampleWriter(SeriesCatalog()).write(
        conn, SampleBatch(f"rules-{uuid.uuid4()}", tenant.id, series)
    )
    return str(tenant.id)


def test_a_vector_at_the_evaluation_time(queries: RuleQueries, tenant_id: str) -> None:
    at = T0_US + 5 * MINUTE_US
    assert queries(tenant_id, "up == 0", at) == [
        Sample((("__name__", "up"), ("job", "db")), 0.0, at)
    ]
    assert queries(tenant_id, "up == 0", T0_US - MINUTE_US) == []  # before the data
    assert queries(tenant_id, "up == 0", T0_US + 20 * MINUTE_US) == []  # past the lookback


def test_a_scalar_is_one_sample_without_labels(queries: RuleQueries, tenant_id: str) -> None:
    at = T0_US + 5 * MINUTE_US
    assert queries(tenant_id, "scalar(sum(up)) * 2", at) == [Sample((), 2.0, at)]


def test_other_results_are_refused(queries: RuleQueries, tenant_id: str) -> None:
    with pytest.raises(BadRequest, match="not a vector or scalar"):
        queries(tenant_id, '"text"', T0_US)
    with pytest.raises(BadRequest, match="not a vector or scalar"):
        queries(tenant_id, "up[5m]", T0_US + 5 * MINUTE_US)


def test_the_composition_root_builds_it(settings: Settings, tenant_id: str) -> None:
    at = T0_US + MINUTE_US
    assert len(rule_queries(settings)(tenant_id, "up", at)) == 2
