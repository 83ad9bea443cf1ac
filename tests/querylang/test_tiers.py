"""Queries answered from rollup tiers against the real database: the planner picks the
coarsest tier that fits, splits ranges across tiers, and the answers agree with the
same queries over raw samples (exactly for sum/count/avg/min/max/last and instant
selectors on bucket-aligned steps; to 1e-9 for rate/increase/histogram_quantile on
regularly scraped series). Late samples are repaired into every tier and reach
cached results."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest

from querylang.engine import QueryEngine, TierPolicy
from querylang.limits import QueryLimits
from querylang.parser import parse
from querylang.result import QueryResult
from querylang.results_cache import ResultsCache
from querylang.service import QueryService
from querylang.timegrid import TimeGrid
from storage import rollups, tenants
from storage.database import Pool, connect
from storage.repair import repair_and_invalidate
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey
from storage.tiers import ROLLUP_TIERS
from vigil.settings import Settings
from vigil.wiring import redis_client

SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
D = int(datetime(2030, 6, 3, tzinfo=UTC).timestamp()) * SECOND_US
START = D - 2 * DAY_US + 7 * SECOND_US  # off the minute, so no sample sits on a bucket edge
END = D + HOUR_US
NOW = END + 2 * MINUTE_US
SETTLE = MINUTE_US
LE = ("0.1", "0.5", "1", "5", "+Inf")
POLICY = TierPolicy(
    retention_us={"raw": 10 * DAY_US, "1m": 14 * DAY_US, "1h": 90 * DAY_US, "1d": 730 * DAY_US}
)


def series_data(times: np.ndarray) -> list[SeriesSamples]:
    """Two gauges, two counters with resets, one with gaps, and a cumulative latency
    histogram."""
    rng = np.random.default_rng(5)
    parts = []
    for host in ("a", "b"):
        gauge = 50 + 20 * np.sin(times / 3.6e9) + rng.normal(0, 3, len(times))
        parts.append(SeriesSamples(SeriesKey.of("temp", {"host": host}), times, gauge))
        steps = rng.integers(0, 20, len(times)).astype(np.float64)
        counter = np.cumsum(steps)
        for reset in np.unique(rng.integers(1, len(times), 6)):
            counter[reset:] -= counter[reset - 1]  # back to this step's increment
        parts.append(SeriesSamples(SeriesKey.of("req_total", {"host": host}), times, counter))
    # A counter with hours-long gaps that restarts high: extrapolation must see them.
    kept = (times - times[0]) % (5 * HOUR_US) > 2 * HOUR_US + 17 * MINUTE_US
    gappy = 1e6 + np.cumsum(rng.integers(0, 20, int(kept.sum()))).astype(np.float64)
    parts.append(SeriesSamples(SeriesKey.of("req_total", {"host": "gappy"}), times[kept], gappy))
    latencies = rng.lognormal(-1, 1, (len(times), 30))
    for le in LE:
        bound = math.inf if le == "+Inf" else float(le)
        counts = np.cumsum((latencies <= bound).sum(axis=1)).astype(np.float64)
        parts.append(SeriesSamples(SeriesKey.of("lat_bucket", {"le": le}), times, counts))
    return parts


def build_tiers(conn: psycopg.Connection, now_us: int) -> None:
    """Run every tier's rollup until it has caught up with `now_us`."""
    for tier in ROLLUP_TIERS:
        while True:
            run = rollups.materialise(conn, tier, now_us, SETTLE, 1440)
            if run.end_us == run.start_us:
                break


@dataclass
class World:
    url: str
    tenant_id: str
    engine: QueryEngine


@pytest.fixture(scope="module")
def world(fresh_databases: Callable[[], AbstractContextManager[str]]) -> Iterator[World]:
    with fresh_databases() as url, connect(url) as conn:
        tenant = tenants.create_tenant(conn, "tiers").tenant
        times = np.arange(START, END, 10 * SECOND_US, dtype=np.int64)
        SampleWriter(SeriesCatalog()).write(conn, SampleBatch("all", tenant.id, series_data(times)))
        build_tiers(conn, NOW)
        yield World(url, str(tenant.id), QueryEngine(QueryLimits(), POLICY))


def run(
    world: World, query: str, start: int, end: int, step: int, raw: bool = False
) -> QueryResult:
    with connect(world.url) as conn:
        return world.engine.range_query(
            conn, world.tenant_id, query, start, end, step, NOW, tier="raw" if raw else "auto"
        )


def assert_agree(tiered: QueryResult, raw: QueryResult, rel: float) -> None:
    assert [s.labels for s in tiered.series] == [s.labels for s in raw.series]
    for got, want in zip(tiered.series, raw.series, strict=True):
        assert got.times_us.tolist() == want.times_us.tolist(), got.labels
        np.testing.assert_allclose(got.values, want.values, rtol=rel, atol=1e-9)


EXACT = [
    "temp",
    "sum_over_time(temp[5m])",
    "count_over_time(temp[10m])",
    "avg_over_time(temp[15m])",
    "min_over_time(temp[5m])",
    "max by (host) (max_over_time(temp[30m]))",
    "last_over_time(temp[2m])",
    "present_over_time(temp[3m])",
]
COUNTERS = [
    "rate(req_total[5m])",
    "increase(req_total[10m])",
    "sum(rate(req_total[15m]))",
    "histogram_quantile(0.9, sum by (le) (rate(lat_bucket[5m])))",
]


@pytest.mark.parametrize("query", EXACT + COUNTERS)
def test_one_minute_tier_answers_like_raw_samples(world: World, query: str) -> None:
    start, end = D - 6 * HOUR_US, D
    tiered = run(world, query, start, end, MINUTE_US)
    assert tiered.tiers == ("1m",)
    assert_agree(tiered, run(world, query, start, end, MINUTE_US, raw=True), 1e-9)


@pytest.mark.parametrize(
    "query",
    [
        "temp",
        "sum_over_time(temp[1h])",
        "avg_over_time(temp[2h])",
        "max_over_time(temp[1h])",
        "count_over_time(temp[3h])",
        "rate(req_total[1h])",
        "increase(req_total[2h])",
        "histogram_quantile(0.5, sum by (le) (rate(lat_bucket[1h])))",
    ],
)
def test_one_hour_tier_answers_like_raw_samples(world: World, query: str) -> None:
    start, end = D - 40 * HOUR_US, D
    tiered = run(world, query, start, end, HOUR_US)
    assert tiered.tiers == ("1h",)
    assert_agree(tiered, run(world, query, start, end, HOUR_US, raw=True), 1e-9)


def test_one_day_tier_answers_like_raw_samples(world: World) -> None:
    query = "sum_over_time(temp[1d]) and count_over_time(temp[1d]) > 0"
    tiered = run(world, query, D, D, DAY_US)
    assert tiered.tiers == ("1d",)
    assert_agree(tiered, run(world, query, D, D, DAY_US, raw=True), 1e-9)


def test_a_range_past_the_watermark_is_split_between_tier_and_raw(world: World) -> None:
    query = "sum_over_time(temp[5m])"
    start, end = D, NOW - NOW % MINUTE_US
    tiered = run(world, query, start, end, MINUTE_US)
    assert tiered.tiers == ("1m", "raw")
    assert_agree(tiered, run(world, query, start, end, MINUTE_US, raw=True), 1e-9)
    with connect(world.url) as conn:
        steps = (end - start) // MINUTE_US + 1
        plan = world.engine.plan(
            conn, world.tenant_id, parse(query), TimeGrid(start, MINUTE_US, steps), NOW
        )
        built = rollups.read_watermarks(conn)["1m"].materialised_to_us
    [tier, raw] = plan.segments
    assert (tier.tier, raw.tier) == ("1m", "raw")
    assert start + (tier.steps - 1) * MINUTE_US == built


def test_functions_without_rollup_columns_read_raw_samples(world: World) -> None:
    result = run(world, "quantile_over_time(0.5, temp[5m])", D - HOUR_US, D, MINUTE_US)
    assert result.tiers == ("raw",)


def test_windows_shorter_than_a_bucket_prefer_a_finer_tier(world: World) -> None:
    result = run(world, "rate(req_total[5m])", D - 10 * HOUR_US, D, HOUR_US)
    assert result.tiers == ("1m",)


def test_windows_shorter_than_every_covering_tier_are_widened_and_said_so(world: World) -> None:
    short = TierPolicy(
        retention_us={"raw": DAY_US, "1m": DAY_US, "1h": 90 * DAY_US, "1d": 730 * DAY_US}
    )
    with connect(world.url) as conn:
        result = QueryEngine(QueryLimits(), short).range_query(
            conn,
            world.tenant_id,
            "rate(req_total[5m])",
            D - 40 * HOUR_US,
            D - 30 * HOUR_US,
            HOUR_US,
            now_us=NOW,
        )
    assert result.tiers == ("1h",)
    assert any("[5m] windows are widened to one 1h bucket" in note for note in result.notes)
    assert any("rate/increase" in note for note in result.notes)
    assert result.series and all(np.isfinite(s.values).all() for s in result.series)


def test_steps_finer_than_every_tier_read_raw_samples(world: World) -> None:
    result = run(world, "temp", D - HOUR_US, D, 15 * SECOND_US)
    assert result.tiers == ("raw",)
    assert result.notes == ()


def test_late_samples_are_repaired_in_every_tier_and_reach_cached_results(
    fresh_databases: Callable[[], AbstractContextManager[str]], settings: Settings
) -> None:
    with fresh_databases() as url, connect(url) as conn:
        tenant = tenants.create_tenant(conn, "late").tenant
        times = np.arange(D - 3 * HOUR_US + 7 * SECOND_US, D + HOUR_US, 10 * SECOND_US)
        writer = SampleWriter(SeriesCatalog())
        writer.write(conn, SampleBatch("all", tenant.id, series_data(times.astype(np.int64))))
        now = D + HOUR_US + 2 * MINUTE_US
        build_tiers(conn, now)
        assert rollups.read_watermarks(conn)["1d"].materialised_to_us == D

        prefix = f"test:{uuid.uuid4()}"
        cache = ResultsCache(redis_client(settings), 10 * MINUTE_US, 3600, prefix)
        service = QueryService(Pool(url), QueryEngine(QueryLimits(), POLICY), cache)
        query = 'sum_over_time(temp{host="a"}[1h])'
        args = (str(tenant.id), query, D - 2 * HOUR_US, D, MINUTE_US, now)
        before = service.range_query(*args)
        assert before.tiers == ("1m",)
        assert redis_client(settings).keys(f"{prefix}:*")  # its settled blocks are cached

        # 90 minutes late: a sample into 23:32, a minute every tier holds already.
        late_time = now - 90 * MINUTE_US
        assert late_time < D
        late = SeriesSamples(
            SeriesKey.of("temp", {"host": "a"}),
            np.array([late_time], dtype=np.int64),
            np.array([1000.0]),
        )
        writer.write(conn, SampleBatch("late", tenant.id, [late]))
        assert rollups.dirty_count(conn) == 1

        repaired = repair_and_invalidate(conn, cache, limit=100)
        assert [b.bucket_us for b in repaired.buckets] == [-(-late_time // MINUTE_US) * MINUTE_US]
        assert {i.end_us for i in repaired.invalidations} == {
            ROLLUP_TIERS[t].bucket_end(late_time) for t in ROLLUP_TIERS
        }
        assert rollups.dirty_count(conn) == 0

        # Every tier equals a fresh recomputation from raw samples.
        stored = {t: tier_rows(conn, t) for t in ROLLUP_TIERS}
        built = rollups.read_watermarks(conn)
        for tier in ROLLUP_TIERS:
            high = built[tier].materialised_to_us
            assert high is not None
            rollups.materialise_window(conn, tier, D - DAY_US, high)
        for tier in ROLLUP_TIERS:  # equal up to the order floating-point sums were taken in
            again = tier_rows(conn, tier)
            assert again.keys() == stored[tier].keys()
            for key, row in again.items():
                for got, want in zip(row, stored[tier][key], strict=True):
                    if isinstance(got, float):
                        assert got == pytest.approx(want, rel=1e-12), (tier, key)
                    else:
                        assert got == want, (tier, key)
        assert 1000.0 in [row[5] for row in stored["1m"].values()]  # the late max

        after = service.range_query(*args)
        fresh = service.range_query(*args, use_cache=False)
        assert_agree(after, fresh, 0)
        changed = [
            t
            for t, old, new in zip(
                before.series[0].times_us,
                before.series[0].values,
                after.series[0].values,
                strict=True,
            )
            if old != new
        ]
        assert changed and all(late_time <= t <= late_time + HOUR_US for t in changed)


def tier_rows(conn: psycopg.Connection, tier: str) -> dict[tuple[int, object], tuple[object, ...]]:
    rows = conn.execute(f"SELECT * FROM vigil.rollup_{tier}").fetchall()
    return {(row[1], row[0]): row for row in rows}
