"""Repair with invalidation against the real database: every range rewritten is
invalidated after the commit, a failed invalidation (of any exception type) puts the
buckets back into the log, and batches stop once the log runs short."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest

from storage import rollups, tenants
from storage.database import connect
from storage.repair import repair_and_invalidate
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey
from storage.timestamps import to_datetime, to_unix_us

SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
HOUR_US = 60 * MINUTE_US
MIDNIGHT_US = to_unix_us(to_datetime(0).replace(year=2043))


class Recorder:
    """An invalidator that records its calls, or fails with `error`."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, str, int, int]] = []
        self.error = error

    def invalidate(self, tenant_id: str, metric: str, start_us: int, end_us: int) -> None:
        if self.error is not None:
            raise self.error
        self.calls.append((tenant_id, metric, start_us, end_us))


def late_data(conn: psycopg.Connection, minutes: dict[str, list[int]]) -> uuid.UUID:
    """A tenant's metrics sampled over the hour before midnight, every tier built to
    midnight, then one late sample in each of the given minutes (by end) of each metric."""
    tenant = tenants.create_tenant(conn, f"t-{uuid.uuid4().hex[:16]}").tenant
    writer = SampleWriter(SeriesCatalog())

    def batch(times: list[int]) -> list[SeriesSamples]:
        return [
            SeriesSamples(SeriesKey.of(metric, {}), np.array(times, np.int64), np.ones(len(times)))
            for metric in minutes
        ]

    start = MIDNIGHT_US - HOUR_US
    times = list(range(start + 5 * SECOND_US, MIDNIGHT_US, 15 * SECOND_US))
    writer.write(conn, SampleBatch("on-time", tenant.id, batch(times)))
    for tier in ("1m", "1h", "1d"):
        rollups.materialise_window(conn, tier, MIDNIGHT_US - 24 * HOUR_US, MIDNIGHT_US)
        conn.execute(
            "UPDATE vigil.rollup_watermark SET claimed_to = %(at)s, materialised_to = %(at)s "
            "WHERE tier = %(tier)s",
            {"tier": tier, "at": to_datetime(MIDNIGHT_US)},
        )
    late = [
        SeriesSamples(
            SeriesKey.of(metric, {}),
            np.array([start + m * MINUTE_US - 7 * SECOND_US for m in ends], np.int64),
            np.full(len(ends), 2.0),
        )
        for metric, ends in minutes.items()
    ]
    writer.write(conn, SampleBatch("late", tenant.id, late))
    return tenant.id


def test_every_range_rewritten_is_invalidated_after_the_commit(
    fresh_database_url: str,
) -> None:
    with connect(fresh_database_url) as conn:
        tenant_id = late_data(conn, {"a": [10, 11, 12, 30], "b": [59]})
        recorder = Recorder()
        done = repair_and_invalidate(conn, recorder, limit=100)
        assert len(done.buckets) == 5 and rollups.dirty_count(conn) == 0
        start = MIDNIGHT_US - HOUR_US
        assert sorted(recorder.calls) == sorted(
            (str(tenant_id), metric, low, high)
            for metric, low, high in [
                ("a", start + 9 * MINUTE_US, start + 12 * MINUTE_US),
                ("a", start + 29 * MINUTE_US, start + 30 * MINUTE_US),
                ("b", start + 58 * MINUTE_US, start + 59 * MINUTE_US),
                ("a", start, MIDNIGHT_US),
                ("b", start, MIDNIGHT_US),
                ("a", MIDNIGHT_US - 24 * HOUR_US, MIDNIGHT_US),
                ("b", MIDNIGHT_US - 24 * HOUR_US, MIDNIGHT_US),
            ]
        )


@pytest.mark.parametrize("error", [ConnectionError("cache down"), RuntimeError("bug")])
def test_a_failed_invalidation_puts_the_buckets_back_and_raises(
    fresh_database_url: str, error: Exception
) -> None:
    with connect(fresh_database_url) as conn:
        late_data(conn, {"a": [10, 20], "b": [30]})
        with pytest.raises(type(error)):
            repair_and_invalidate(conn, Recorder(error), limit=100)
        assert rollups.dirty_count(conn) == 3
        recorder = Recorder()
        assert len(repair_and_invalidate(conn, recorder, limit=100).buckets) == 3
        assert recorder.calls and rollups.dirty_count(conn) == 0


def test_batches_run_until_one_finds_fewer_than_its_limit(fresh_database_url: str) -> None:
    with connect(fresh_database_url) as conn:
        late_data(conn, {"a": [10, 20, 30], "b": [40, 50]})
        assert len(repair_and_invalidate(conn, None, limit=2).buckets) == 2
        assert rollups.dirty_count(conn) == 3
        done = repair_and_invalidate(conn, Recorder(), limit=2, batches=10)
        assert len(done.buckets) == 3 and rollups.dirty_count(conn) == 0
        assert not repair_and_invalidate(conn, None, limit=2, batches=10).buckets
