"""The SampleSource contract: MemorySource answers every selection exactly as
DatabaseSource does over the same samples (real PostgreSQL).

One set of series is written into a fresh tenant (and, for the rollup tiers, into a
fresh database whose tiers are materialised over it) and held by a MemorySource; each
case asks both sources the same selection and compares the answers after sorting:
which series (every matcher op, missing labels, RE2 regexes, empty results) and every
point, times and value bits (NaN and stale markers), at the time-bound edges each
method documents. Where a case names the series it should select, both must.
"""

from __future__ import annotations

import math
import struct
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pytest

from querylang import ast
from querylang.database_source import DatabaseSource
from querylang.evaluator.values import STALE_NAN_BITS
from querylang.explanation import Explanation
from querylang.limits import QueryLimits
from querylang.memory_source import MemorySource
from querylang.parser import parse
from querylang.sample_source import SampleSource
from querylang.timegrid import TimeGrid
from storage import rollups, tenants
from storage.database import connect
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.selections import SelectedColumns, SelectedSeries
from storage.series import SeriesCatalog, SeriesKey
from storage.tiers import ROLLUP_TIERS

S = 1_000_000
MINUTE = 60 * S
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = 1_924_992_000 * S
"""2031-01-01T00:00:00Z: past any rollup claim of the shared test database, so the
writer never logs these samples as late there."""
NAN = math.nan
STALE = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


@dataclass(frozen=True)
class Stored:
    """A series both sources hold: times in seconds after T0."""

    metric: str
    labels: dict[str, str]
    seconds: Sequence[float]
    values: Sequence[float]

    @property
    def times_us(self) -> np.ndarray:
        return T0 + (np.asarray(self.seconds, dtype=np.float64) * S).astype(np.int64)


SERIES = [
    Stored("cpu", {"host": "a", "env": "prod"}, [0, 10, 20, 30, 40, 50, 60], [0, 1, 2, 3, 4, 5, 6]),
    Stored("cpu", {"host": "b", "env": "dev"}, [5, 15, 25, 35, 45], [10, NAN, STALE, 13, 14]),
    Stored("cpu", {"host": "c"}, [0, 30, 60], [1, 2, 3]),
    Stored("cpu_seconds", {"host": "a"}, [0, 60], [0.5, 1.5]),
    Stored("mem", {"host": "a", "env": "prod"}, [30, 60], [100, 200]),
    Stored("http_requests", {"path": "/v1/users", "code": "200"}, [0, 60], [1, -2]),
    Stored("http_requests", {"path": "/v2", "code": "500"}, [0, 60], [math.inf, -math.inf]),
    Stored("http_requests", {"path": "/v1\nx", "code": "200"}, [60], [5]),
]


def memory_source(series: Sequence[Stored]) -> MemorySource:
    source = MemorySource()
    for item in series:
        source.add(item.metric, item.labels, item.times_us, np.asarray(item.values))
    return source


def write(conn: psycopg.Connection, tenant_id: uuid.UUID, series: Sequence[Stored]) -> None:
    batch = [
        SeriesSamples(SeriesKey.of(s.metric, s.labels), s.times_us, np.asarray(s.values))
        for s in series
    ]
    SampleWriter(SeriesCatalog()).write(
        conn, SampleBatch(f"contract-{uuid.uuid4()}", tenant_id, batch)
    )


def database_source(conn: psycopg.Connection, tenant_id: uuid.UUID) -> DatabaseSource:
    return DatabaseSource(
        conn, str(tenant_id), QueryLimits(), time.monotonic() + 600, Explanation()
    )


@dataclass
class Sources:
    memory: MemorySource
    database: DatabaseSource


@pytest.fixture(scope="module")
def raw_sources(database_url: str) -> Iterator[Sources]:
    """Both sources over SERIES: the database's in a tenant of its own."""
    with connect(database_url) as conn:
        tenant = tenants.create_tenant(conn, f"contract-{uuid.uuid4().hex[:12]}").tenant
        write(conn, tenant.id, SERIES)
        yield Sources(memory_source(SERIES), database_source(conn, tenant.id))


# ---------------------------------------------------------------------------------
# Answers, normalised for comparison


def _bits(values: np.ndarray) -> list[int]:
    return [int(bits) for bits in np.asarray(values, dtype=np.float64).view(np.uint64)]


def _series_key(metric: str, labels: Any) -> str:
    return metric + "{" + ",".join(f"{k}={v!r}" for k, v in sorted(dict(labels).items())) + "}"


def selection(found: Sequence[SelectedSeries]) -> list[tuple[str, list[int], list[int]]]:
    """Series by key with their times and the bits of their values, sorted."""
    return sorted(
        (_series_key(s.metric, s.labels), s.times_us.tolist(), _bits(s.values)) for s in found
    )


def columns(found: Sequence[SelectedColumns]) -> list[tuple[str, list[list[object]]]]:
    """Series by key with every column as a list (NaN as "NaN", so NaN equals NaN)."""
    return sorted(
        (
            _series_key(s.metric, s.labels),
            [
                ["NaN" if isinstance(v, float) and v != v else v for v in column.tolist()]
                for column in s.columns
            ],
        )
        for s in found
    )


def matchers(selector: str) -> tuple[ast.Matcher, ...]:
    expr = parse(selector)
    assert isinstance(expr, ast.VectorSelector)
    return expr.matchers


# ---------------------------------------------------------------------------------
# Which series each matcher selects

MATCHER_CASES = [
    ("cpu", ["cpu{env='dev',host='b'}", "cpu{env='prod',host='a'}", "cpu{host='c'}"]),
    ('cpu{env="prod"}', ["cpu{env='prod',host='a'}"]),
    ('cpu{env!="prod"}', ["cpu{env='dev',host='b'}", "cpu{host='c'}"]),
    ('cpu{env=""}', ["cpu{host='c'}"]),
    ('cpu{env!=""}', ["cpu{env='dev',host='b'}", "cpu{env='prod',host='a'}"]),
    (
        'cpu{nonexistent=""}',
        ["cpu{env='dev',host='b'}", "cpu{env='prod',host='a'}", "cpu{host='c'}"],
    ),
    ('cpu{nonexistent!=""}', []),
    ('cpu{env=~"pro.*"}', ["cpu{env='prod',host='a'}"]),
    ('cpu{env=~"pro"}', []),
    ('cpu{env=~"prod|"}', ["cpu{env='prod',host='a'}", "cpu{host='c'}"]),
    ('cpu{env!~"prod|"}', ["cpu{env='dev',host='b'}"]),
    ('cpu{env!~"d.*"}', ["cpu{env='prod',host='a'}", "cpu{host='c'}"]),
    ('cpu{env=~".+"}', ["cpu{env='dev',host='b'}", "cpu{env='prod',host='a'}"]),
    ('cpu{env!~".*"}', []),
    ('cpu{env=~"(?i)PROD"}', ["cpu{env='prod',host='a'}"]),
    ('cpu{env=~"nomatch.*"}', []),
    ('cpu{host="zzz"}', []),
    ("nonexistent", []),
    (
        '{__name__=~"cpu.*"}',
        [
            "cpu_seconds{host='a'}",
            "cpu{env='dev',host='b'}",
            "cpu{env='prod',host='a'}",
            "cpu{host='c'}",
        ],
    ),
    ('{__name__=~"cpu|mem", host="a"}', ["cpu{env='prod',host='a'}", "mem{env='prod',host='a'}"]),
    ('{__name__!~"cpu.*", host="a"}', ["mem{env='prod',host='a'}"]),
    ('{__name__="mem"}', ["mem{env='prod',host='a'}"]),
    ('http_requests{path=~"/v1.*"}', ["http_requests{code='200',path='/v1/users'}"]),
    (
        'http_requests{path=~"(?s)/v1.*"}',
        ["http_requests{code='200',path='/v1/users'}", "http_requests{code='200',path='/v1\\nx'}"],
    ),
    ('http_requests{path!~"/v1/.*", code="200"}', ["http_requests{code='200',path='/v1\\nx'}"]),
    ('http_requests{code=~"[45]..", path!="/v1/users"}', ["http_requests{code='500',path='/v2'}"]),
]


@pytest.mark.parametrize(("selector", "expected"), MATCHER_CASES, ids=[c[0] for c in MATCHER_CASES])
def test_matchers_select_the_same_series(
    raw_sources: Sources, selector: str, expected: list[str]
) -> None:
    grid = TimeGrid(T0 + 60 * S, 0, 1)
    memory = selection(raw_sources.memory.instant(matchers(selector), grid, 5 * MINUTE))
    database = selection(raw_sources.database.instant(matchers(selector), grid, 5 * MINUTE))
    assert memory == database
    assert [key for key, _, _ in memory] == expected


# ---------------------------------------------------------------------------------
# Points at the time-bound edges

Ask = Callable[[SampleSource], Sequence[SelectedSeries]]


def _us(seconds: float) -> int:
    return round(seconds * S)


def _instant(selector: str, start_s: float, step_s: float, count: int, lookback_s: float) -> Ask:
    grid = TimeGrid(T0 + _us(start_s), _us(step_s), count)
    return lambda source: source.instant(matchers(selector), grid, _us(lookback_s))


def _range(selector: str, start_s: float, step_s: float, count: int, range_s: float) -> Ask:
    grid = TimeGrid(T0 + _us(start_s), _us(step_s), count)
    return lambda source: source.range(matchers(selector), grid, _us(range_s))


POINT_CASES: dict[str, tuple[Ask, dict[str, list[float]] | None]] = {
    # instant: the latest sample of each step interval within [start - lookback, end]
    "instant, one step, everything": (_instant('{__name__=~".+"}', 60, 0, 1, 300), None),
    "instant, NaN then a stale marker as the latest": (
        _instant("cpu", 25, 0, 1, 10),
        {"cpu{env='dev',host='b'}": [25], "cpu{env='prod',host='a'}": [20]},
    ),
    "instant, a sample exactly at start - lookback is in": (
        _instant("cpu", 40, 0, 1, 10),
        {
            "cpu{env='dev',host='b'}": [35],
            "cpu{env='prod',host='a'}": [40],
            "cpu{host='c'}": [30],
        },
    ),
    "instant, one microsecond short of it is out": (
        _instant("cpu{host='c'}", 40, 0, 1, 10 - 1e-6),
        {},
    ),
    "instant, a sample exactly at the step is in": (
        _instant("cpu{host='c'}", 30, 0, 1, 1),
        {"cpu{host='c'}": [30]},
    ),
    "instant, a sample just after the last step is out": (
        _instant("cpu{host='c'}", 29.999999, 0, 1, 20),
        {},
    ),
    "instant, three steps": (
        _instant("cpu", 10, 20, 3, 15),
        {
            "cpu{env='dev',host='b'}": [5, 25, 45],
            "cpu{env='prod',host='a'}": [10, 30, 50],
            "cpu{host='c'}": [0, 30],
        },
    ),
    "instant, a lookback longer than the step": (
        _instant("cpu{host='a'}", 40, 10, 3, 25),
        {"cpu{env='prod',host='a'}": [20, 30, 40, 50, 60]},
    ),
    "instant, before any sample": (_instant("cpu", -100, 10, 5, 30), {}),
    "instant, ±Inf values": (
        _instant('http_requests{code="500"}', 60, 60, 2, 300),
        {"http_requests{code='500',path='/v2'}": [0, 60]},
    ),
    # range: every sample in [start - range, end]
    "range, both edges in": (
        _range("cpu{host='a'}", 30, 0, 1, 20),
        {"cpu{env='prod',host='a'}": [10, 20, 30]},
    ),
    "range, one microsecond inside each edge": (
        _range("cpu{host='a'}", 29.999999, 0, 1, 19.999998),
        {"cpu{env='prod',host='a'}": [20]},
    ),
    "range, several steps": (
        _range("cpu", 20, 20, 2, 10),
        {
            "cpu{env='dev',host='b'}": [15, 25, 35],
            "cpu{env='prod',host='a'}": [10, 20, 30, 40],
            "cpu{host='c'}": [30],
        },
    ),
    "range, NaN and stale markers come as they are": (
        _range("cpu{host='b'}", 60, 0, 1, 60),
        {"cpu{env='dev',host='b'}": [5, 15, 25, 35, 45]},
    ),
    "range, nothing in the window": (_range("cpu", 61, 30, 2, 0.5), {}),
    "range, nothing matches": (_range("nonexistent", 60, 0, 1, 60), {}),
}


@pytest.mark.parametrize("name", list(POINT_CASES))
def test_instant_and_range_points_are_the_same(raw_sources: Sources, name: str) -> None:
    ask, expected_times = POINT_CASES[name]
    memory = selection(ask(raw_sources.memory))
    assert memory == selection(ask(raw_sources.database))
    if expected_times is not None:
        assert {key: [(t - T0) / S for t in times] for key, times, _ in memory} == expected_times


def test_stale_markers_and_nan_keep_their_bits(raw_sources: Sources) -> None:
    for source in (raw_sources.memory, raw_sources.database):
        [found] = source.range(matchers('cpu{host="b"}'), TimeGrid(T0 + 60 * S, 0, 1), 60 * S)
        bits = _bits(found.values)
        assert bits[2] == STALE_NAN_BITS
        assert math.isnan(found.values[1]) and bits[1] != STALE_NAN_BITS


# ---------------------------------------------------------------------------------
# Rollup tiers: bucket columns computed from raw samples, as materialised

D = T0 + 2 * DAY
"""A day boundary with rollup data on both sides of it."""


def _rollup_series() -> list[Stored]:
    """Three hours around D: a counter with resets inside and across buckets, a gauge
    with NaN, a stale marker and a sample on a bucket end, and a sparse series."""
    start = (D - T0) / S - 90 * 60
    seconds = [start + 17 * k for k in range(640)]  # off the minute: no sample on an edge
    counter, value = [], 0.0
    for k in range(len(seconds)):
        value = 3.0 if k in (100, 101, 377) else value + (k % 7)  # resets, one twice in a row
        counter.append(value)
    gauge = [float((k * 37) % 23) - 5 for k in range(len(seconds))]
    gauge[10], gauge[11], gauge[200] = NAN, NAN, STALE
    edge = (D - T0) / S  # exactly on the day's end: the bucket ending at D holds it
    return [
        Stored("requests_total", {"job": "api"}, seconds, counter),
        Stored(
            "temperature",
            {"room": "a"},
            [*seconds[:300], edge, *seconds[300:]],
            [*gauge[:300], 42.0, *gauge[300:]],
        ),
        Stored("sparse", {"room": "b"}, [start, start + 3 * 3600], [1.0, NAN]),
    ]


ROLLUP_SERIES = _rollup_series()
ALL_COLUMNS = (
    "samples",
    "sum",
    "min",
    "max",
    "first_time",
    "first_value",
    "last_time",
    "last_value",
    "reset_correction",
    "increase",
)


@pytest.fixture(scope="module")
def rollup_sources(
    fresh_databases: Callable[[], AbstractContextManager[str]],
) -> Iterator[Sources]:
    """Both sources over ROLLUP_SERIES, the database's with every tier materialised
    over the data (in a database of its own: materialising moves global state)."""
    with fresh_databases() as url, connect(url) as conn:
        tenant = tenants.create_tenant(conn, "contract-rollups").tenant
        write(conn, tenant.id, ROLLUP_SERIES)
        for name in ROLLUP_TIERS:
            rollups.materialise_window(conn, name, D - DAY, D + DAY)
        yield Sources(memory_source(ROLLUP_SERIES), database_source(conn, tenant.id))


ROLLUP_CASES = [
    ("1m", '{__name__=~".+"}', D - DAY, D + DAY),
    ("1m", "requests_total", D - 30 * MINUTE, D + 30 * MINUTE),
    # (low, high]: the bucket ending at low is out, the one ending at high is in.
    ("1m", "temperature", D - MINUTE, D),
    ("1m", "temperature", D, D + MINUTE),
    ("1m", "temperature", D - 1, D + 1),
    ("1h", '{__name__=~".+"}', D - DAY, D + DAY),
    ("1h", "temperature", D - HOUR, D),
    ("1d", '{__name__=~".+"}', D - DAY, D + DAY),
    ("1d", "sparse", D, D + DAY),
    ("1h", "nonexistent", D - DAY, D + DAY),
    ("1m", "requests_total", D + 2 * HOUR, D + 3 * HOUR),
]


@pytest.mark.parametrize(
    ("tier", "selector", "low", "high"),
    ROLLUP_CASES,
    ids=[f"{t} {s} ({(lo - D) / S:+g}s, {(hi - D) / S:+g}s]" for t, s, lo, hi in ROLLUP_CASES],
)
def test_rollup_columns_are_the_same(
    rollup_sources: Sources, tier: str, selector: str, low: int, high: int
) -> None:
    spec = ROLLUP_TIERS[tier]
    memory = rollup_sources.memory.rollup(matchers(selector), spec, ALL_COLUMNS, low, high)
    database = rollup_sources.database.rollup(matchers(selector), spec, ALL_COLUMNS, low, high)
    assert columns(memory) == columns(database)
    for series in memory:
        buckets = series.columns[0]
        assert ((buckets > low) & (buckets <= high)).all()


def test_rollups_leave_stale_markers_out_and_keep_nan(rollup_sources: Sources) -> None:
    spec = ROLLUP_TIERS["1h"]
    [found] = rollup_sources.memory.rollup(
        matchers("temperature"), spec, ("samples", "sum", "min"), D - DAY, D + DAY
    )
    assert found.columns[1].sum() == len(ROLLUP_SERIES[1].seconds) - 1  # the stale marker
    assert math.isnan(found.columns[2][0]) and not math.isnan(found.columns[3][0])


def test_a_subset_of_columns_comes_in_the_order_asked(rollup_sources: Sources) -> None:
    spec = ROLLUP_TIERS["1h"]
    asked = ("last_value", "samples", "last_time")
    for source in (rollup_sources.memory, rollup_sources.database):
        [found] = source.rollup(matchers("sparse"), spec, asked, D - DAY, D + DAY)
        buckets, last_value, samples, last_time = found.columns
        assert buckets.dtype == np.int64 and last_time.dtype == np.int64
        assert samples.tolist() == [1.0, 1.0]
        assert math.isnan(last_value[1])


def test_unknown_columns_are_refused_as_the_compiler_refuses_them() -> None:
    with pytest.raises(ValueError, match="not rollup columns"):
        MemorySource().rollup(matchers("x"), ROLLUP_TIERS["1m"], ("median",), 0, MINUTE)
