"""The results cache against the real Redis: settled blocks reused, the fresh tail
recomputed, exact invalidation, and a dead Redis degrading to uncached answers."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator

import numpy as np
import orjson
import pytest
import redis

from querylang.parser import parse
from querylang.result import QueryResult, Series
from querylang.results_cache import BLOCK_STEPS, ResultsCache, _decode
from tests.live_servers import free_port
from vigil.settings import Settings

STEP = 15_000_000
MINUTE = 60_000_000
FRESHNESS = 10 * MINUTE
NOW = 1_700_000_000_000_000 - 1_700_000_000_000_000 % STEP + 7 * STEP


@pytest.fixture
def client(settings: Settings, database_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(settings.redis_url)
    yield connection
    connection.close()


@pytest.fixture
def cache(client: redis.Redis) -> Iterator[ResultsCache]:
    prefix = f"test:qc:{uuid.uuid4().hex[:12]}"
    yield ResultsCache(client, freshness_us=FRESHNESS, ttl_s=600, prefix=prefix)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)


class Recorder:
    """A computation whose answer at t is a function of t, logging each range asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.version = 0

    def __call__(self, start: int, end: int) -> QueryResult:
        self.calls.append((start, end))
        times = np.arange(start, end + 1, STEP, dtype=np.int64)
        values = (times // STEP % 1000).astype(np.float64) + self.version * 1e12
        return QueryResult("matrix", [Series((("host", "a"),), times, values)])

    def steps(self) -> int:
        return sum((end - start) // STEP + 1 for start, end in self.calls)


def _ask(cache: ResultsCache, compute: Recorder, query: str, start: int, end: int, now: int):
    return cache.range_query("tenant", parse(query), start, end, STEP, now, compute, 5 * MINUTE)


def test_a_refreshing_dashboard_recomputes_only_its_fresh_tail(cache: ResultsCache) -> None:
    compute = Recorder()
    start, end = NOW - 24 * 60 * MINUTE, NOW
    first = _ask(cache, compute, "cpu", start, end, NOW)
    expected = Recorder()(start, end)
    assert np.array_equal(first.series[0].times_us, expected.series[0].times_us)
    assert np.array_equal(first.series[0].values, expected.series[0].values)

    compute.calls.clear()
    later = NOW + 2 * STEP  # 30 s later, the window slides with it
    second = _ask(cache, compute, "cpu", start + 2 * STEP, end + 2 * STEP, later)
    want = Recorder()(start + 2 * STEP, end + 2 * STEP)
    assert np.array_equal(second.series[0].times_us, want.series[0].times_us)
    assert np.array_equal(second.series[0].values, want.series[0].values)
    # Only the fresh tail and the partial block before it are computed again.
    assert compute.steps() <= FRESHNESS // STEP + 2 * BLOCK_STEPS
    assert compute.steps() < (end - start) // STEP // 10


def test_spelling_does_not_split_the_cache(cache: ResultsCache) -> None:
    compute = Recorder()
    start = NOW - 6 * 60 * MINUTE
    _ask(cache, compute, 'sum by (host) (rate(x{a="1"}[5m]))', start, NOW, NOW)
    compute.calls.clear()
    _ask(cache, compute, "sum(rate(x{a='1'}[300s])) by (host)", start, NOW, NOW)
    assert compute.steps() <= FRESHNESS // STEP + BLOCK_STEPS + 1


def test_invalidation_drops_exactly_the_blocks_that_read_the_range(cache: ResultsCache) -> None:
    compute = Recorder()
    start = NOW - 6 * 60 * MINUTE
    _ask(cache, compute, "rate(cpu[5m])", start, NOW, NOW)
    _ask(cache, compute, "mem", start, NOW, NOW)
    compute.calls.clear()
    late = NOW - 3 * 60 * MINUTE
    dropped = cache.invalidate("tenant", "cpu", late, late + MINUTE)
    # A minute of data is read by the block holding it and, through the 5 m range,
    # at most the next one.
    assert 1 <= dropped <= 2
    assert cache.invalidate("other-tenant", "cpu", start, NOW) == 0

    compute.version = 1  # the repaired data answers differently
    after = _ask(cache, compute, "rate(cpu[5m])", start, NOW, NOW)
    recomputed = {t for a, b in compute.calls for t in range(a, b + 1, STEP)}
    assert any(a <= late <= b for a, b in compute.calls)
    changed = after.series[0].values >= 1e12
    # Exactly the recomputed steps carry the new answer.
    assert set(after.series[0].times_us[changed].tolist()) == recomputed & set(
        after.series[0].times_us.tolist()
    )
    compute.calls.clear()
    _ask(cache, compute, "mem", start, NOW, NOW)  # another metric: untouched
    assert compute.steps() <= FRESHNESS // STEP + BLOCK_STEPS + 1


def test_a_dead_redis_means_uncached_answers_not_errors(settings: Settings) -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    cache = ResultsCache(dead, freshness_us=FRESHNESS, ttl_s=600)
    compute = Recorder()
    result = _ask(cache, compute, "cpu", NOW - 60 * MINUTE, NOW, NOW)
    assert len(result.series[0].times_us) == 60 * MINUTE // STEP + 1


def test_queries_pinned_to_their_own_range_are_not_cached(cache: ResultsCache) -> None:
    compute = Recorder()
    start = NOW - 6 * 60 * MINUTE
    _ask(cache, compute, "cpu @ end()", start, NOW, NOW)
    compute.calls.clear()
    _ask(cache, compute, "cpu @ end()", start, NOW, NOW)
    assert compute.calls == [(start, NOW)]


def test_a_query_at_the_point_limit_is_computed_in_runs_under_it(cache: ResultsCache) -> None:
    compute = Recorder()
    start = NOW - 11_000 * STEP  # 11,001 steps, all settled but the tail
    result = _ask(cache, compute, "cpu", start, NOW, NOW)
    assert len(result.series[0].times_us) == 11_001
    assert max((end - begin) // STEP + 1 for begin, end in compute.calls) <= 11_000


def test_an_answer_computed_before_an_invalidation_is_not_cached_after_it(
    cache: ResultsCache,
) -> None:
    """A query that read the data before a repair committed must not store its answer
    once the repair's invalidation has run (it would outlive the change)."""
    start, end = NOW - 2 * BLOCK_STEPS * STEP - FRESHNESS, NOW

    class RacingRepair(Recorder):
        def __call__(self, first: int, last: int) -> QueryResult:
            answer = super().__call__(first, last)  # read before the repair commits
            if len(self.calls) == 1:
                cache.invalidate("tenant", "up", start - MINUTE, end)
            return answer

    racing = RacingRepair()
    _ask(cache, racing, "up", start, end, NOW)
    later = Recorder()
    _ask(cache, later, "up", start, end, NOW)
    assert later.calls[0] == racing.calls[0]  # computed again: nothing stale was stored
    again = Recorder()
    _ask(cache, again, "up", start, end, NOW)
    assert again.steps() < later.steps()  # and the recomputed answer is cached as usual


def test_blocks_cached_by_earlier_versions_still_decode() -> None:
    """Blocks written before results carried approximation notes stay readable."""
    header = orjson.dumps({"labels": [[["host", "a"]]], "counts": [1], "tiers": ["raw"]})
    blob = struct.pack(">I", len(header)) + header
    blob += np.array([STEP], "<i8").tobytes() + np.array([2.5], "<f8").tobytes()
    decoded = _decode(blob)
    assert decoded.notes == () and decoded.series[0].values.tolist() == [2.5]
