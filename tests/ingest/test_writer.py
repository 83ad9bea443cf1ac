"""The writer: poison envelopes are set aside without blocking the good ones."""

from __future__ import annotations

import time
import uuid

import numpy as np
import psycopg
import pytest

from ingest.envelope import encode_envelopes
from ingest.envelope_wire import series_wire
from ingest.validation import AcceptedSeries, ValidatedBatch
from storage.errors import SampleWriteRejected
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey
from storage.tenants import Tenant
from tests.live_servers import wait_until, writers
from tests.stored import sample_count
from vigil.settings import Settings
from vigil.wiring import bus_publisher


def validated(tenant: Tenant, metric: str, label_value: str, time_us: int) -> ValidatedBatch:
    key = SeriesKey(metric, (("v", label_value),))
    fingerprint = key.fingerprint()
    series = AcceptedSeries(key, fingerprint, int.from_bytes(fingerprint[:8]), series_wire(key))
    return ValidatedBatch(
        series=[series],
        counts=np.array([1], np.int64),
        times_us=np.array([time_us], np.int64),
        values=np.array([1.0]),
        rejections=[],
        batch_time_us=time_us,
    )


def test_a_refused_batch_raises_sample_write_rejected(
    conn: psycopg.Connection, tenant: Tenant
) -> None:
    now_us = time.time_ns() // 1000
    bad = SampleBatch(
        "nul-\x00-key",
        tenant.id,
        [SeriesSamples(SeriesKey("m", ()), np.array([now_us]), np.array([1.0]))],
    )
    with pytest.raises(SampleWriteRejected):
        SampleWriter(SeriesCatalog()).write(conn, bad)


def test_poison_envelopes_are_dropped_and_the_rest_written(
    bus_settings: Settings, conn: psycopg.Connection, tenant: Tenant
) -> None:
    publisher = bus_publisher(bus_settings)
    now_us = time.time_ns() // 1000
    envelopes = []
    for number in range(6):
        # A NUL in a label value passes no API, but an envelope is what any producer
        # with bus access can write: PostgreSQL refuses the series.
        value = "a\x00b" if number == 3 else f"ok-{number}"
        batch = validated(tenant, "poison_test", value, now_us + number)
        envelopes += encode_envelopes(
            tenant.id, f"id:{uuid.uuid4().hex}", batch, bus_settings.bus.partitions, now_us
        )
    publisher.publish(envelopes)
    with writers(bus_settings) as stats:
        wait_until(lambda: stats.envelopes >= 6, timeout_s=30)
    assert sample_count(conn, tenant.id) == 5
    assert stats.poison == 1
    wait_until(lambda: publisher.backlog() == 0, timeout_s=5)  # the poison is acknowledged
