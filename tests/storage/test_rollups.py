"""The rollup engine against the real TimescaleDB: every tier's columns equal the same
aggregates computed from the raw samples, with Prometheus's NaN and counter-reset
semantics; runs are incremental, idempotent and race-free with the writer."""

from __future__ import annotations

import itertools
import math
import struct
import uuid
from dataclasses import dataclass

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import rollups, tenants
from storage.database import connect
from storage.queries import query
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey
from storage.tiers import ROLLUP_TIERS
from storage.timestamps import to_datetime, to_unix_us

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
# Far from every other test's samples: the window materialised below is global.
REGION_US = to_unix_us(to_datetime(0).replace(year=2041))
COLUMNS = (
    "samples, sum, min, max, first_time, first_value, last_time, last_value, "
    "reset_correction, increase"
)


@dataclass(frozen=True)
class Bucket:
    samples: int
    sum: float
    min: float
    max: float
    first_time: int
    first_value: float
    last_time: int
    last_value: float
    reset_correction: float
    increase: float


def reference(times: list[int], values: list[float], width_us: int) -> dict[int, Bucket]:
    """Per bucket end, the aggregates straight from raw samples, as Prometheus
    computes them (Python's comparisons with NaN are false, like Go's)."""
    grouped: dict[int, list[tuple[int, float]]] = {}
    for time, value in sorted(zip(times, values, strict=True)):
        if _is_stale(value):
            continue
        grouped.setdefault(-(-time // width_us) * width_us, []).append((time, value))
    out = {}
    for end, samples in grouped.items():
        vals = [v for _, v in samples]
        finite = [v for v in vals if not math.isnan(v)]
        correction = sum(prev for prev, cur in itertools.pairwise(vals) if cur < prev)
        out[end] = Bucket(
            samples=len(vals),
            sum=math.fsum(vals) if all(math.isfinite(v) for v in vals) else sum(vals),
            min=min(finite) if finite else math.nan,
            max=max(finite) if finite else math.nan,
            first_time=samples[0][0],
            first_value=vals[0],
            last_time=samples[-1][0],
            last_value=vals[-1],
            reset_correction=correction,
            increase=vals[-1] - vals[0] + correction,
        )
    return out


def _is_stale(value: float) -> bool:
    return struct.pack("<d", value) == struct.pack("<d", STALE_NAN)


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def stored_tier(conn: psycopg.Connection, tier: str, series_id: int) -> dict[int, Bucket]:
    rows = conn.execute(
        f"SELECT bucket, {COLUMNS} FROM vigil.rollup_{tier} WHERE series_id = %s",
        (series_id,),
    ).fetchall()
    return {
        to_unix_us(row[0]): Bucket(
            row[1],
            row[2],
            row[3],
            row[4],
            to_unix_us(row[5]),
            row[6],
            to_unix_us(row[7]),
            row[8],
            row[9],
            row[10],
        )
        for row in rows
    }


def assert_tier_matches(stored: dict[int, Bucket], expected: dict[int, Bucket]) -> None:
    assert sorted(stored) == sorted(expected)
    for end, want in expected.items():
        got = stored[end]
        assert got.samples == want.samples, end
        assert (got.first_time, got.last_time) == (want.first_time, want.last_time), end
        for name in ("sum", "min", "max", "first_value", "last_value"):
            assert _same(getattr(got, name), getattr(want, name)), (end, name, got, want)
        for name in ("reset_correction", "increase"):
            assert _same(getattr(got, name), getattr(want, name)), (end, name, got, want)


def write(conn: psycopg.Connection, tenant_id: uuid.UUID, series: list[SeriesSamples]) -> None:
    writer = SampleWriter(SeriesCatalog())
    writer.write(conn, SampleBatch(f"b-{uuid.uuid4()}", tenant_id, series))


def series_ids(conn: psycopg.Connection, tenant_id: uuid.UUID) -> dict[str, int]:
    rows = conn.execute(
        "SELECT labels->>'s', id FROM vigil.series WHERE tenant_id = %s", (tenant_id,)
    ).fetchall()
    return dict(rows)


gauge_values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, STALE_NAN, 0.0]),
)


@st.composite
def raw_series(draw: st.DrawFn) -> tuple[list[int], list[float]]:
    """Irregular sample times over up to ~6 h, as a gauge (with NaN, ±Inf, stale
    markers) or as a counter with resets."""
    count = draw(st.integers(1, 120))
    gaps = draw(st.lists(st.integers(1, 400 * SECOND_US), min_size=count, max_size=count))
    times = np.cumsum(gaps).tolist()
    if draw(st.booleans()):
        values: list[float] = draw(st.lists(gauge_values, min_size=count, max_size=count))
    else:
        steps = draw(st.lists(st.floats(0, 50), min_size=count, max_size=count))
        resets = draw(st.lists(st.booleans(), min_size=count, max_size=count))
        values, total = [], 0.0
        for step, reset in zip(steps, resets, strict=True):
            total = step if reset and draw(st.integers(0, 9)) == 0 else total + step
            values.append(total)
    return times, values


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    series=st.lists(raw_series(), min_size=1, max_size=3),
    day=st.integers(0, 3000),
    offset=st.integers(-7 * HOUR_US, 0),
)
def test_every_tier_equals_aggregates_of_the_raw_samples(
    database_url: str, series: list[tuple[list[int], list[float]]], day: int, offset: int
) -> None:
    midnight = REGION_US + day * DAY_US
    start = midnight + offset  # often crosses midnight, so 1d has two buckets
    with connect(database_url) as conn:
        tenant = tenants.create_tenant(conn, f"t-{uuid.uuid4().hex[:16]}").tenant
        parts = [
            SeriesSamples(
                SeriesKey.of("m", {"s": str(index)}),
                np.asarray(times, np.int64) + start,
                np.asarray(values, np.float64),
            )
            for index, (times, values) in enumerate(series)
        ]
        write(conn, tenant.id, parts)
        ids = series_ids(conn, tenant.id)
        low, high = midnight - DAY_US, midnight + DAY_US
        for tier in ROLLUP_TIERS:
            rollups.materialise_window(conn, tier, low, high)
        for index, part in enumerate(parts):
            for tier, spec in ROLLUP_TIERS.items():
                expected = reference(part.times_us.tolist(), part.values.tolist(), spec.width_us)
                assert_tier_matches(stored_tier(conn, tier, ids[str(index)]), expected)


def test_rerunning_a_window_rewrites_identical_rows(conn: psycopg.Connection) -> None:
    tenant = tenants.create_tenant(conn, f"t-{uuid.uuid4().hex[:16]}").tenant
    # A day no other run of this test used: the window's row count is global.
    start = REGION_US + (3100 + uuid.uuid4().int % 100_000) * DAY_US
    times = start + np.arange(0, 2 * HOUR_US, 10 * SECOND_US, dtype=np.int64)
    write(conn, tenant.id, [SeriesSamples(SeriesKey.of("m", {"s": "0"}), times, times % 7.0)])
    series_id = series_ids(conn, tenant.id)["0"]
    low, high = start, start + 2 * HOUR_US
    first = [rollups.materialise_window(conn, tier, low, high) for tier in ("1m", "1h")]
    before = {tier: stored_tier(conn, tier, series_id) for tier in ("1m", "1h")}
    again = [rollups.materialise_window(conn, tier, low, high) for tier in ("1m", "1h")]
    assert first == again == [120, 2]
    assert before == {tier: stored_tier(conn, tier, series_id) for tier in ("1m", "1h")}


def test_window_bounds_must_be_bucket_ends(conn: psycopg.Connection) -> None:
    with pytest.raises(ValueError, match="multiples of the 1h bucket width"):
        rollups.materialise_window(conn, "1h", MINUTE_US, HOUR_US)


def test_watermark_runs_catch_up_in_bounded_steps_resume_dead_claims_and_skip_when_busy(
    fresh_database_url: str,
) -> None:
    with connect(fresh_database_url) as conn:
        tenant = tenants.create_tenant(conn, "watermarks").tenant
        start = REGION_US
        times = start + np.arange(5 * SECOND_US, 3 * HOUR_US, 10 * SECOND_US, dtype=np.int64)
        write(conn, tenant.id, [SeriesSamples(SeriesKey.of("m", {"s": "0"}), times, times / 1e6)])
        now = start + 3 * HOUR_US + 90 * SECOND_US  # the last minute closes 60 s after its end

        first = rollups.materialise(conn, "1m", now, MINUTE_US, max_buckets=60)
        assert first.end_us - first.start_us == HOUR_US  # bounded catch-up from the oldest chunk
        assert first.start_us <= start
        runs = [first]
        while runs[-1].end_us > runs[-1].start_us:
            runs.append(rollups.materialise(conn, "1m", now, MINUTE_US, max_buckets=60))
        assert sum(run.rows for run in runs) == 180
        assert rollups.read_watermarks(conn)["1m"].materialised_to_us == start + 3 * HOUR_US

        # A run that died after its claim: the next one builds the claimed range.
        conn.execute(
            "UPDATE vigil.rollup_watermark SET materialised_to = materialised_to - interval "
            "'5 minutes' WHERE tier = '1m'"
        )
        built = start + 3 * HOUR_US
        conn.execute(
            "DELETE FROM vigil.rollup_1m WHERE bucket > %s", (to_datetime(built - 5 * MINUTE_US),)
        )
        resumed = rollups.materialise(conn, "1m", now, MINUTE_US, max_buckets=60)
        assert (resumed.end_us - resumed.start_us, resumed.rows) == (5 * MINUTE_US, 5)
        assert conn.execute("SELECT count(*) FROM vigil.rollup_1m").fetchone() == (180,)

        # Another run of the tier is under way: this one leaves the work to it.
        with connect(fresh_database_url) as other, other.transaction():
            other.execute("SELECT * FROM vigil.rollup_watermark WHERE tier = '1m' FOR UPDATE")
            busy = rollups.materialise(conn, "1m", now + HOUR_US, MINUTE_US, max_buckets=60)
        assert busy == rollups.RollupRun("1m", 0, 0, 0)

        hours = rollups.materialise(conn, "1h", now, MINUTE_US, max_buckets=60)
        assert hours.rows == 3 and hours.end_us == start + 3 * HOUR_US


def _tier_rows(conn: psycopg.Connection, tier: str) -> dict[tuple[int, int], tuple[object, ...]]:
    """Every row of a tier by (series, bucket end), NaN spelled so that rows compare."""
    rows = conn.execute(f"SELECT series_id, bucket, {COLUMNS} FROM vigil.rollup_{tier}")
    return {
        (row[0], to_unix_us(row[1])): tuple(
            "NaN" if isinstance(value, float) and math.isnan(value) else value for value in row[2:]
        )
        for row in rows
    }


def _assert_same_tiers(
    conn: psycopg.Connection, want: dict[str, dict[tuple[int, int], tuple[object, ...]]]
) -> None:
    for tier in ROLLUP_TIERS:
        got = _tier_rows(conn, tier)
        assert got.keys() == want[tier].keys(), tier
        differing = [(key, got[key], want[tier][key]) for key in got if got[key] != want[tier][key]]
        assert not differing, "\n".join(map(repr, [tier, len(differing), *differing[:3]]))


def _set_watermarks(conn: psycopg.Connection, built: dict[str, int]) -> None:
    for tier, high in built.items():
        conn.execute(
            "UPDATE vigil.rollup_watermark SET claimed_to = %(high)s, materialised_to = %(high)s "
            "WHERE tier = %(tier)s",
            {"tier": tier, "high": to_datetime(high)},
        )


def _late(metric: str, series: int, times_us: list[int], values: list[float]) -> SeriesSamples:
    return SeriesSamples(
        SeriesKey.of(metric, {"s": str(series)}),
        np.asarray(times_us, np.int64),
        np.asarray(values, np.float64),
    )


@pytest.mark.parametrize("limit", [1, 4, 1000])
def test_repairing_late_samples_of_many_metrics_and_ranges_equals_a_rebuild(
    fresh_database_url: str, limit: int
) -> None:
    t0 = REGION_US + 4000 * DAY_US  # a midnight
    times = np.arange(t0 - 3 * HOUR_US + 5 * SECOND_US, t0 + 2 * HOUR_US, 15 * SECOND_US)
    steps = np.arange(len(times), dtype=np.float64)
    with connect(fresh_database_url) as conn:
        tenant = tenants.create_tenant(conn, "repaired").tenant
        other = tenants.create_tenant(conn, "untouched").tenant
        write(
            conn,
            tenant.id,
            [
                _late("requests_total", 0, times.tolist(), (steps * 3).tolist()),
                _late("requests_total", 1, times.tolist(), (steps % 100).tolist()),  # resets
                _late("temperature", 0, times.tolist(), np.sin(steps / 9).tolist()),
                _late("temperature", 1, times.tolist(), np.cos(steps / 7).tolist()),
                _late("sparse", 0, times[::40].tolist(), steps[::40].tolist()),  # every 10 min
            ],
        )
        write(conn, other.id, [_late("requests_total", 0, times.tolist(), steps.tolist())])
        # 1m and 1h hold two hours past midnight, 1d the day before it.
        built = {"1m": t0 + 2 * HOUR_US, "1h": t0 + 2 * HOUR_US, "1d": t0}
        for tier, high in built.items():
            rollups.materialise_window(conn, tier, t0 - DAY_US, high)
        _set_watermarks(conn, built)

        minute = [t0 - 2 * HOUR_US + m * MINUTE_US for m in range(60)]
        gap = t0 - HOUR_US + 5 * MINUTE_US + 3 * SECOND_US  # in a minute that had no sample
        write(
            conn,
            tenant.id,
            [
                # Never at a time the series already has a sample: which of two samples
                # at one time comes first is arbitrary, in a rebuild as in a repair.
                # A 5-minute range and a 1-minute one in one hour, with counter resets.
                _late(
                    "requests_total",
                    0,
                    [minute[m] + 7 * SECOND_US for m in (10, 11, 12, 13, 14, 40)],
                    [5.0, 1e9, 2.0, 3.0, 0.0, 1.0],
                ),
                _late("requests_total", 1, [minute[12] + 7 * SECOND_US], [0.0]),
                # Two minutes across midnight: two 1h buckets, and only the 1d one built.
                _late("temperature", 0, [t0 - 23 * SECOND_US, t0 + 23 * SECOND_US], [math.nan, 5]),
                _late("temperature", 1, [t0 - 23 * SECOND_US], [STALE_NAN]),
                # The last minute the tiers hold, and a minute that had no sample.
                _late(
                    "sparse",
                    0,
                    [t0 + 2 * HOUR_US - 20 * SECOND_US, gap],
                    [7.0, 8.0],
                ),
            ],
        )
        dirty = rollups.dirty_count(conn)
        assert dirty == 10
        repairs = []
        while (done := rollups.repair(conn, limit)).buckets:
            assert len(done.buckets) <= limit
            repairs.append(done)
        assert sum(len(done.buckets) for done in repairs) == dirty
        assert rollups.dirty_count(conn) == 0
        assert {i.tenant_id for done in repairs for i in done.invalidations} == {tenant.id}
        if limit >= dirty:  # one repair: its ranges are the islands of dirty buckets
            (only,) = repairs
            m = MINUTE_US
            assert sorted((i.metric, i.start_us, i.end_us) for i in only.invalidations) == sorted(
                [
                    ("requests_total", minute[10], minute[15]),
                    ("requests_total", minute[40], minute[41]),
                    ("requests_total", t0 - 2 * HOUR_US, t0 - HOUR_US),
                    ("requests_total", t0 - DAY_US, t0),
                    ("temperature", t0 - m, t0 + m),
                    ("temperature", t0 - HOUR_US, t0 + HOUR_US),
                    ("temperature", t0 - DAY_US, t0),
                    ("sparse", t0 - HOUR_US + 5 * m, t0 - HOUR_US + 6 * m),
                    ("sparse", t0 + 2 * HOUR_US - m, t0 + 2 * HOUR_US),
                    ("sparse", t0 - HOUR_US, t0),
                    ("sparse", t0 + HOUR_US, t0 + 2 * HOUR_US),
                    ("sparse", t0 - DAY_US, t0),
                ]
            )
        repaired = {tier: _tier_rows(conn, tier) for tier in ROLLUP_TIERS}
        (sparse,) = ids_of(conn, tenant.id, "sparse")
        at = to_datetime(gap)
        assert repaired["1m"][sparse, t0 - HOUR_US + 6 * MINUTE_US] == (
            *(1, 8.0, 8.0, 8.0, at, 8.0, at, 8.0, 0.0, 0.0),
        )

        # Every tier, rebuilt from nothing, equals what the repairs left.
        for tier in ROLLUP_TIERS:
            conn.execute(f"DELETE FROM vigil.rollup_{tier}")
        for tier, high in built.items():
            rollups.materialise_window(conn, tier, t0 - DAY_US, high)
        _assert_same_tiers(conn, repaired)

        # Repairing the same buckets again rewrites identical rows.
        rollups.remark(conn, [bucket for done in repairs for bucket in done.buckets])
        while rollups.repair(conn, limit).buckets:
            pass
        _assert_same_tiers(conn, repaired)


def ids_of(conn: psycopg.Connection, tenant_id: uuid.UUID, metric: str) -> list[int]:
    rows = conn.execute(
        "SELECT id FROM vigil.series WHERE tenant_id = %s AND metric = %s ORDER BY labels->>'s'",
        (tenant_id, metric),
    )
    return [series_id for (series_id,) in rows]


def test_a_repair_claims_around_buckets_writers_hold_and_locks_only_what_it_takes(
    fresh_database_url: str,
) -> None:
    t0 = REGION_US + 4000 * DAY_US  # a midnight
    times = np.arange(t0 - HOUR_US + 5 * SECOND_US, t0, 15 * SECOND_US)
    with connect(fresh_database_url) as conn, connect(fresh_database_url) as writer:
        tenant = tenants.create_tenant(conn, "contended").tenant
        write(conn, tenant.id, [_late(m, 0, times.tolist(), [1.0] * len(times)) for m in "ab"])
        built = {"1m": t0, "1h": t0, "1d": t0}
        for tier, high in built.items():
            rollups.materialise_window(conn, tier, t0 - DAY_US, high)
        _set_watermarks(conn, built)
        a, b = (ids_of(conn, tenant.id, metric)[0] for metric in "ab")
        minute = [t0 - HOUR_US + m * MINUTE_US for m in range(60)]
        late = {"a": [minute[10], minute[20], minute[40]], "b": [minute[30], minute[50]]}
        write(
            conn,
            tenant.id,
            [
                _late(m, 0, [at + 7 * SECOND_US for at in ends], [2.0] * len(ends))
                for m, ends in late.items()
            ],
        )
        conn.execute("SET lock_timeout = '5s'")
        writer.execute("SET lock_timeout = '5s'")

        # A writer marking a's minute 10 late again holds its log row until it commits: a
        # repair takes the other buckets, without waiting for it.
        with writer.transaction():
            rollups.mark_late(writer, np.array([a]), np.array([minute[10] + 9 * SECOND_US]))
            done = rollups.repair(conn, limit=100)
        assert sorted((d.metric, d.bucket_us) for d in done.buckets) == [
            ("a", minute[21]),
            ("a", minute[41]),
            ("b", minute[31]),
            ("b", minute[51]),
        ]
        assert [d.bucket_us for d in rollups.repair(conn, limit=100).buckets] == [minute[11]]

        # While a claim is held, a writer marking a bucket it did not take never waits:
        # the claim locks only the rows it takes (a's, whose oldest bucket comes first).
        rollups.mark_late(
            writer, np.array([a, b, b]), np.array([minute[50], minute[5], minute[55]])
        )
        with conn.transaction():
            taken = conn.execute(
                query("claim_dirty"), {"materialised_to": to_datetime(t0), "limit": 2}
            ).fetchall()
            assert [(metric, to_unix_us(bucket)) for _, metric, bucket in taken] == [
                ("b", minute[5]),
                ("b", minute[55]),
            ]
            rollups.mark_late(writer, np.array([a]), np.array([minute[50] - SECOND_US]))
        assert rollups.dirty_count(conn) == 1
