"""A counter series to write for the jobs to roll up."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg

from storage import tenants
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey

MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US


def write_samples(
    conn: psycopg.Connection, tenant: tenants.Tenant, start_us: int, end_us: int
) -> int:
    """A counter sampled every 15 s in [start, end), one series; returns the samples."""
    times = np.arange(start_us, end_us, 15_000_000, dtype=np.int64)
    series = SeriesSamples(
        SeriesKey.of("requests_total", {"host": "a"}), times, np.arange(len(times), dtype=float)
    )
    batch = SampleBatch(key=f"batch-{uuid.uuid4()}", tenant_id=tenant.id, series=[series])
    return SampleWriter(SeriesCatalog()).write(conn, batch).samples
