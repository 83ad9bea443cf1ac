"""Sample writes and reads against the real TimescaleDB: exact, exactly once, in chunks."""

from __future__ import annotations

import struct
import threading
import uuid

import numpy as np
import psycopg
import pytest

from storage import tenants
from storage.database import connect
from storage.samples import (
    SampleBatch,
    SampleWriter,
    SeriesColumns,
    SeriesSamples,
    read_samples,
)
from storage.series import SeriesCatalog, SeriesKey
from storage.tenants import Tenant
from tests.stored import sample_count

NOW_US = 1_790_000_000_000_000  # a fixed instant: tests never read the clock
HOUR_US = 3_600_000_000
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def make_batch(
    tenant: Tenant, series: int, samples: int, *, seed: int = 1, spacing_us: int = 10_000_000
) -> SampleBatch:
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(series):
        # Irregular µs offsets so the round trip checks full timestamp precision.
        times = NOW_US + np.arange(samples, dtype=np.int64) * spacing_us
        times += rng.integers(0, 1_000_000, samples)
        parts.append(
            SeriesSamples(
                SeriesKey.of("http_requests_total", {"host": f"h{s}", "code": "200"}),
                times,
                rng.standard_normal(samples) * 1e6,
            )
        )
    return SampleBatch(key=f"batch-{uuid.uuid4()}", tenant_id=tenant.id, series=parts)


def stored(conn: psycopg.Connection, tenant: Tenant) -> int:
    return sample_count(conn, tenant.id)


def read_back(conn: psycopg.Connection, batch: SampleBatch) -> dict[SeriesKey, tuple]:
    rows = conn.execute(
        "SELECT id, metric, labels FROM vigil.series WHERE tenant_id = %s", (batch.tenant_id,)
    ).fetchall()
    keys = {row[0]: SeriesKey.of(row[1], row[2]) for row in rows}
    columns = read_samples(conn, list(keys), NOW_US - HOUR_US, NOW_US + 100 * HOUR_US)
    result = {}
    for series_id, key in keys.items():
        mask = columns.series_ids == series_id
        result[key] = (columns.times_us[mask], columns.values[mask])
    return result


def test_100k_samples_round_trip_exactly(conn: psycopg.Connection, tenant: Tenant) -> None:
    batch = make_batch(tenant, series=1000, samples=100)
    result = SampleWriter(SeriesCatalog()).write(conn, batch)
    assert (result.samples, result.duplicate) == (100_000, False)

    back = read_back(conn, batch)
    assert set(back) == {part.key for part in batch.series}
    for part in batch.series:
        times, values = back[part.key]
        order = np.argsort(part.times_us)
        assert np.array_equal(times, part.times_us[order])
        assert np.array_equal(values.view(np.int64), part.values[order].view(np.int64))


def test_same_batch_twice_leaves_one_copy(conn: psycopg.Connection, tenant: Tenant) -> None:
    batch = make_batch(tenant, series=50, samples=20)
    first = SampleWriter(SeriesCatalog()).write(conn, batch)
    # A second writer process (cold cache) replaying the same batch.
    second = SampleWriter(SeriesCatalog()).write(conn, batch)
    assert (first.duplicate, second.duplicate) == (False, True)
    assert stored(conn, tenant) == 1000


def test_same_batch_from_concurrent_writers_leaves_one_copy(
    database_url: str, conn: psycopg.Connection, tenant: Tenant
) -> None:
    batch = make_batch(tenant, series=200, samples=50)
    barrier = threading.Barrier(4)
    outcomes = []

    def write() -> None:
        with connect(database_url) as own:
            barrier.wait()
            outcomes.append(SampleWriter(SeriesCatalog()).write(own, batch).duplicate)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False, True, True, True]
    assert stored(conn, tenant) == 10_000
    series = conn.execute(
        "SELECT count(*) FROM vigil.series WHERE tenant_id = %s", (tenant.id,)
    ).fetchone()
    assert series == (200,)


def test_batches_with_other_keys_are_all_written(conn: psycopg.Connection, tenant: Tenant) -> None:
    writer = SampleWriter(SeriesCatalog())
    writer.write(conn, make_batch(tenant, series=10, samples=10, seed=1))
    writer.write(conn, make_batch(tenant, series=10, samples=10, seed=2))
    assert stored(conn, tenant) == 200


def test_nan_infinities_and_stale_markers_survive(conn: psycopg.Connection, tenant: Tenant) -> None:
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, np.finfo(np.float64).max, STALE_NAN])
    key = SeriesKey.of("odd_values", {})
    batch = SampleBatch(
        key="odd",
        tenant_id=tenant.id,
        series=[SeriesSamples(key, NOW_US + np.arange(len(values), dtype=np.int64), values)],
    )
    SampleWriter(SeriesCatalog()).write(conn, batch)
    _, back = read_back(conn, batch)[key]
    # Bit for bit: the Prometheus stale marker is one particular NaN.
    assert back.view(np.uint64).tolist() == values.view(np.uint64).tolist()


def test_samples_land_in_hypertable_chunks(conn: psycopg.Connection, tenant: Tenant) -> None:
    # 10 hours of data at the default 2-hour chunk interval.
    batch = make_batch(tenant, series=3, samples=60, spacing_us=HOUR_US // 6)
    SampleWriter(SeriesCatalog()).write(conn, batch)
    ids = [
        row[0]
        for row in conn.execute("SELECT id FROM vigil.series WHERE tenant_id = %s", (tenant.id,))
    ]
    placement = conn.execute(
        """
        SELECT c.chunk_schema, count(*)
        FROM vigil.samples_raw s
        JOIN timescaledb_information.chunks c
          ON format('%%I.%%I', c.chunk_schema, c.chunk_name)::regclass = s.tableoid
        WHERE s.series_id = ANY(%s)
        GROUP BY c.chunk_schema
        """,
        (ids,),
    ).fetchall()
    assert placement == [("_timescaledb_internal", 180)]
    chunks = conn.execute(
        """
        SELECT count(DISTINCT tableoid) FROM vigil.samples_raw WHERE series_id = ANY(%s)
        """,
        (ids,),
    ).fetchone()
    assert chunks is not None and chunks[0] >= 5
    parent_only = conn.execute("SELECT count(*) FROM ONLY vigil.samples_raw").fetchone()
    assert parent_only == (0,)


def test_empty_series_are_skipped(conn: psycopg.Connection, tenant: Tenant) -> None:
    empty = SeriesSamples(SeriesKey.of("nothing", {}), np.array([], np.int64), np.array([]))
    result = SampleWriter(SeriesCatalog()).write(
        conn, SampleBatch(key="empty", tenant_id=tenant.id, series=[empty])
    )
    assert (result.samples, result.duplicate) == (0, False)
    assert stored(conn, tenant) == 0


def test_mismatched_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        SeriesSamples(SeriesKey.of("m", {}), np.array([1, 2], np.int64), np.array([1.0]))


def test_batch_keys_are_per_tenant(conn: psycopg.Connection, tenant: Tenant) -> None:
    other = tenants.create_tenant(conn, f"{tenant.name}-b").tenant
    writer = SampleWriter(SeriesCatalog())
    ours = make_batch(tenant, series=5, samples=5)
    theirs = SampleBatch(key=ours.key, tenant_id=other.id, series=ours.series)
    assert not writer.write(conn, ours).duplicate
    assert not writer.write(conn, theirs).duplicate
    assert stored(conn, tenant) == stored(conn, other) == 25


def as_columns(batch: SampleBatch, asked: list[int] | None = None) -> SampleBatch:
    """The same batch with its series as fingerprint-keyed columns (the writer's form);
    `asked` collects the positions whose keys the writer asked for."""
    parts = list(batch.series)
    asked = [] if asked is None else asked

    def key_of(index: int) -> SeriesKey:
        asked.append(index)
        return parts[index].key

    columns = SeriesColumns(
        fingerprints=[part.key.fingerprint() for part in parts],
        key_of=key_of,
        counts=np.array([len(part.times_us) for part in parts], np.int64),
        times_us=np.concatenate([part.times_us for part in parts]),
        values=np.concatenate([part.values for part in parts]),
    )
    return SampleBatch(batch.key, batch.tenant_id, columns, batch_time_us=batch.batch_time_us)


def test_many_batches_of_two_tenants_in_one_call_are_each_written_once(
    conn: psycopg.Connection, tenant: Tenant
) -> None:
    other = tenants.create_tenant(conn, f"t-{uuid.uuid4().hex[:16]}").tenant
    ours = make_batch(tenant, series=20, samples=5, seed=1)
    theirs = make_batch(other, series=20, samples=5, seed=2)
    second = make_batch(tenant, series=20, samples=5, seed=3)
    writer = SampleWriter(SeriesCatalog())
    results = writer.write_many(conn, [ours, as_columns(theirs), ours, as_columns(second)])
    assert [r.duplicate for r in results] == [False, False, True, False]
    assert [r.duplicate for r in writer.write_many(conn, [second, theirs])] == [True, True]
    assert stored(conn, tenant) == 200 and stored(conn, other) == 100
    back = read_back(conn, theirs)
    for part in theirs.series:
        times, values = back[part.key]
        assert sorted(zip(times.tolist(), values.tolist(), strict=True)) == sorted(
            zip(part.times_us.tolist(), part.values.tolist(), strict=True)
        )


def test_columns_build_keys_only_for_series_the_catalog_lacks(
    conn: psycopg.Connection, tenant: Tenant
) -> None:
    catalog = SeriesCatalog()
    asked_first: list[int] = []
    SampleWriter(catalog).write(
        conn, as_columns(make_batch(tenant, series=10, samples=2, seed=1), asked_first)
    )
    assert sorted(asked_first) == list(range(10))
    asked_again: list[int] = []
    SampleWriter(catalog).write(
        conn, as_columns(make_batch(tenant, series=10, samples=2, seed=5), asked_again)
    )
    assert asked_again == []
