"""The planner against the real database: late samples waiting for repair are never
answered from stale rollup buckets, a query whose raw samples are affordable is
answered exactly from them, and a caller can force a tier."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import pytest

from querylang.engine import QueryEngine, TierPolicy
from querylang.errors import BadRequest
from querylang.limits import QueryLimits
from querylang.result import QueryResult
from storage import rollups, tenants
from storage.database import connect
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey
from tests.querylang.test_tiers import (
    DAY_US,
    MINUTE_US,
    NOW,
    POLICY,
    SECOND_US,
    assert_agree,
    build_tiers,
    series_data,
)

D = NOW - NOW % DAY_US
START = D - 3 * 3600 * SECOND_US + 7 * SECOND_US
BACKFILL_START = NOW - 100 * MINUTE_US + 3 * SECOND_US  # 30 minutes the 1m tier has passed
BACKFILL_END = BACKFILL_START + 30 * MINUTE_US
HOSTS = 20


@dataclass
class Late:
    url: str
    tenant_id: str


@pytest.fixture(scope="module")
def late(fresh_databases: Callable[[], AbstractContextManager[str]]) -> Iterator[Late]:
    """Three hours of data rolled up to NOW, then a backfill of 30 minutes of a metric
    the tiers have never seen, into minutes the 1m tier has already passed."""
    with fresh_databases() as url, connect(url) as conn:
        tenant = tenants.create_tenant(conn, "late").tenant
        writer = SampleWriter(SeriesCatalog())
        times = np.arange(START, NOW - 2 * MINUTE_US, 10 * SECOND_US, dtype=np.int64)
        writer.write(conn, SampleBatch("history", tenant.id, series_data(times)))
        build_tiers(conn, NOW)
        assert rollups.read_watermarks(conn)["1m"].materialised_to_us >= BACKFILL_END
        backfill = np.arange(BACKFILL_START, BACKFILL_END, 10 * SECOND_US, dtype=np.int64)
        writer.write(
            conn,
            SampleBatch(
                "backfill",
                tenant.id,
                [
                    SeriesSamples(
                        SeriesKey.of("backfill", {"host": f"h{host}"}),
                        backfill,
                        np.sin(backfill / 1e8 + host) * 100,
                    )
                    for host in range(HOSTS)
                ],
            ),
        )
        assert rollups.dirty_count(conn) == 30  # the backfill's minutes, for one metric
        yield Late(url, str(tenant.id))


def run(late: Late, query: str, tier: str = "auto", budget: int = 0) -> QueryResult:
    engine = QueryEngine(
        QueryLimits(),
        TierPolicy(POLICY.retention_us, raw_sample_budget=budget),
    )
    start = BACKFILL_START - BACKFILL_START % MINUTE_US - 20 * MINUTE_US
    with connect(late.url) as conn:
        return engine.range_query(
            conn, late.tenant_id, query, start, start + 90 * MINUTE_US, MINUTE_US, NOW, tier=tier
        )


@pytest.mark.parametrize(
    "query",
    [
        "backfill",
        "sum_over_time(backfill[5m])",
        "max by (host) (avg_over_time(backfill[5m]))",
        "count(count_over_time(backfill[10m]))",
    ],
)
def test_buckets_awaiting_repair_are_read_from_raw_samples(late: Late, query: str) -> None:
    tiered = run(late, query)
    assert "raw" in tiered.tiers and "1m" in tiered.tiers
    assert any("late samples" in note for note in tiered.notes)
    assert len(tiered.series) == (1 if query.startswith("count") else HOSTS)
    assert_agree(tiered, run(late, query, tier="raw"), 1e-9)


def test_metrics_without_late_samples_still_read_their_tier(late: Late) -> None:
    result = run(late, "sum_over_time(temp[5m])")
    assert result.tiers == ("1m",)
    assert not any("late samples" in note for note in result.notes)


def test_after_repair_the_tier_answers_again(
    fresh_databases: Callable[[], AbstractContextManager[str]],
) -> None:
    with fresh_databases() as url, connect(url) as conn:
        tenant = tenants.create_tenant(conn, "repaired").tenant
        times = np.arange(START, NOW - 2 * MINUTE_US, 10 * SECOND_US, dtype=np.int64)
        writer = SampleWriter(SeriesCatalog())
        writer.write(conn, SampleBatch("history", tenant.id, series_data(times)))
        build_tiers(conn, NOW)
        late_time = np.array([BACKFILL_START], dtype=np.int64)
        key = SeriesKey.of("temp", {"host": "a"})
        writer.write(
            conn, SampleBatch("late", tenant.id, [SeriesSamples(key, late_time, np.array([1e6]))])
        )
        world = Late(url, str(tenant.id))
        query = 'max_over_time(temp{host="a"}[5m])'
        assert "raw" in run(world, query).tiers
        assert max(run(world, query).series[0].values) == 1e6
        rollups.repair(conn, limit=100)
        repaired = run(world, query)
        assert repaired.tiers == ("1m",)
        assert max(repaired.series[0].values) == 1e6


def test_an_affordable_query_is_answered_exactly_from_raw_samples(late: Late) -> None:
    query = "max by (host) (avg_over_time(temp[5m]))"
    exact = run(late, query, budget=50_000_000)
    assert exact.tiers == ("raw",)
    assert exact.notes == ()
    assert_agree(exact, run(late, query, tier="raw"), 0)
    assert run(late, query, budget=100).tiers == ("1m",)  # over the budget: the tier


def test_a_caller_can_force_a_tier(late: Late) -> None:
    assert run(late, "sum_over_time(temp[1h])", tier="1m", budget=50_000_000).tiers == ("1m",)
    with pytest.raises(BadRequest, match="cannot answer"):
        run(late, "max_over_time(temp[5m:1m])", tier="1m")
    with pytest.raises(BadRequest, match="tier"):
        run(late, "temp", tier="5m")
