"""Storage-layer write throughput beside the raw COPY ceiling, measured in one run.

A realistic batch is 10k series x 100 samples (1M samples, 10 s apart). Each round
writes a fresh time window four ways:

  ceiling    one binary COPY of the same rows into an identical hypertable
  unknown    SampleWriter.write for a new tenant: all 10k series registered first
  known      SampleWriter.write again, series cached (the steady state)
  staging    the rejected idempotency design: COPY into a temp table, then
             INSERT ... ON CONFLICT DO NOTHING into a hypertable with a unique key

Before each timed write a CHECKPOINT flushes what the previous one left dirty, and
the order of the four rotates per round, so no variant pays for another's I/O.
Figures are medians over the rounds. The last stdout line is one JSON object.
Usage: python bench/write_path.py [--rounds 3] [--series 10000] [--samples 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
from psycopg import sql

from storage import tenants
from storage.copy_binary import encode_samples
from storage.database import connect
from storage.migrations import migrate
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey
from vigil.services import local_services
from vigil.settings import Settings

BENCH_DATABASE = "vigil_bench"
INTERVAL_US = 10_000_000
START_US = 1_790_000_000_000_000

TWIN_TABLES = """
CREATE SCHEMA bench;
CREATE TABLE bench.samples_ceiling (LIKE vigil.samples_raw);
SELECT create_hypertable('bench.samples_ceiling', by_range('time', interval '2 hours'),
                         create_default_indexes => false);
CREATE INDEX ON bench.samples_ceiling (series_id, time);
CREATE TABLE bench.samples_unique (LIKE vigil.samples_raw);
SELECT create_hypertable('bench.samples_unique', by_range('time', interval '2 hours'),
                         create_default_indexes => false);
CREATE UNIQUE INDEX ON bench.samples_unique (series_id, time);
"""


def fresh_database(settings: Settings) -> str:
    """An empty, migrated benchmark database on the configured server."""
    parts = urlsplit(settings.database_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(BENCH_DATABASE)
            )
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DATABASE)))
    url = urlunsplit(parts._replace(path=f"/{BENCH_DATABASE}"))
    with connect(url) as conn:
        migrate(conn, samples_chunk_interval=settings.storage.samples_chunk_interval)
        conn.execute(TWIN_TABLES)
        indexes = conn.execute(
            "SELECT tablename, count(*) FROM pg_indexes WHERE tablename IN "
            "('samples_raw', 'samples_ceiling', 'samples_unique') GROUP BY 1"
        ).fetchall()
    # Identical tables means one index each; the twins must not carry extra ones.
    assert sorted(indexes) == [("samples_ceiling", 1), ("samples_raw", 1), ("samples_unique", 1)]
    return url


def series_keys(count: int) -> list[SeriesKey]:
    """Realistic keys: 100 metric names per host, a handful of labels each."""
    metrics = [f"node_metric_{m:02d}" for m in range(100)]
    return [
        SeriesKey.of(
            metrics[i % 100],
            {
                "host": f"web-{i // 100:05d}.prod.example",
                "region": ("us-east-1", "eu-west-1", "ap-south-1")[i // 100 % 3],
                "service": ("checkout", "search", "auth", "billing")[i // 300 % 4],
                "env": "prod",
            },
        )
        for i in range(count)
    ]


def batch_for(
    keys: list[SeriesKey], samples: int, window: int, tenant_id: uuid.UUID, rng: np.random.Generator
) -> SampleBatch:
    start = START_US + window * samples * INTERVAL_US
    times = start + np.arange(samples, dtype=np.int64) * INTERVAL_US
    values = np.cumsum(rng.standard_normal((len(keys), samples)), axis=1)
    return SampleBatch(
        key=f"bench-{uuid.uuid4()}",
        tenant_id=tenant_id,
        series=[SeriesSamples(key, times, values[i]) for i, key in enumerate(keys)],
    )


def timed(conn: psycopg.Connection, action: Callable[[], object]) -> float:
    conn.execute("CHECKPOINT")
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def copy_ceiling(conn: psycopg.Connection, payload: bytes) -> None:
    with (
        conn.transaction(),
        conn.cursor().copy(
            "COPY bench.samples_ceiling (time, series_id, value) FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.write(payload)


def staging_on_conflict(conn: psycopg.Connection, payload: bytes) -> None:
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE staging (LIKE vigil.samples_raw) ON COMMIT DROP")
        with conn.cursor().copy(
            "COPY staging (time, series_id, value) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.write(payload)
        conn.execute(
            "INSERT INTO bench.samples_unique SELECT * FROM staging ON CONFLICT DO NOTHING"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()

    settings = Settings()
    for service in local_services(settings):
        service.up()
    url = fresh_database(settings)
    keys = series_keys(args.series)
    rng = np.random.default_rng(42)
    total = args.series * args.samples
    seconds: dict[str, list[float]] = {"ceiling": [], "unknown": [], "known": [], "staging": []}

    with connect(url) as conn:
        window = 0
        for round_number in range(args.rounds):
            tenant = tenants.create_tenant(conn, f"bench-{round_number}").tenant
            writer = SampleWriter(SeriesCatalog())
            unknown = batch_for(keys, args.samples, window, tenant.id, rng)
            known = batch_for(keys, args.samples, window + 1, tenant.id, rng)
            # The same rows, already encoded, for the ceiling and the staging design.
            payload = encode_samples(
                np.concatenate([part.times_us for part in known.series]),
                np.repeat(np.arange(1, args.series + 1, dtype=np.int64), args.samples),
                np.concatenate([part.values for part in known.series]),
            )
            # Rotated per round; "unknown" stays just before "known", which needs its cache.
            steps: list[list[tuple[str, Callable[[], object]]]] = [
                [("ceiling", lambda p=payload: copy_ceiling(conn, p))],
                [
                    ("unknown", lambda b=unknown, w=writer: w.write(conn, b)),
                    ("known", lambda b=known, w=writer: w.write(conn, b)),
                ],
                [("staging", lambda p=payload: staging_on_conflict(conn, p))],
            ]
            shift = round_number % len(steps)
            for step in steps[shift:] + steps[:shift]:
                for name, action in step:
                    seconds[name].append(timed(conn, action))
            window += 2
            print(
                f"round {round_number + 1}: "
                + "  ".join(f"{name} {total / s[-1]:>9,.0f}/s" for name, s in seconds.items()),
                flush=True,
            )
        size = conn.execute(
            "SELECT hypertable_size('vigil.samples_raw'), (SELECT count(*) FROM vigil.samples)"
        ).fetchone()
    assert size is not None

    rate = {name: total / statistics.median(values) for name, values in seconds.items()}
    figures = {
        "samples_per_s": round(rate["known"]),
        "samples_per_s_unknown_series": round(rate["unknown"]),
        "copy_ceiling_samples_per_s": round(rate["ceiling"]),
        "ratio": round(rate["known"] / rate["ceiling"], 3),
        "ratio_unknown_series": round(rate["unknown"] / rate["ceiling"], 3),
        "staging_on_conflict_samples_per_s": round(rate["staging"]),
        "bytes_per_sample": round(size[0] / size[1], 1),
        "batch": f"{args.series} series x {args.samples} samples",
        "rounds": args.rounds,
    }
    print(
        f"\nstorage layer, series known:   {rate['known']:>10,.0f} samples/s "
        f"({figures['ratio']:.0%} of ceiling)\n"
        f"storage layer, series unknown: {rate['unknown']:>10,.0f} samples/s "
        f"({figures['ratio_unknown_series']:.0%} of ceiling)\n"
        f"raw COPY ceiling:              {rate['ceiling']:>10,.0f} samples/s\n"
        f"staging + ON CONFLICT:         {rate['staging']:>10,.0f} samples/s "
        f"({rate['staging'] / rate['ceiling']:.0%} of ceiling)\n"
        f"on disk: {figures['bytes_per_sample']} bytes/sample (heap + index)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
