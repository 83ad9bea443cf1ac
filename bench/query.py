"""Query latency beside Prometheus on the same data, across rollup tiers, and what
queries cost ingestion.

The data set: `--hosts` hosts x `--metrics` series each (a CPU gauge, a request counter,
a ten-bucket latency histogram and filler gauges and counters), `--hours` at 10 s,
ending at a fixed time (2026-01-01T00:00Z), generated deterministically. It is loaded
once into Vigil through the storage layer (database `vigil_bench_query`, one tenant per
data set; bench/write_path.py and bench/ingest.py recreate `vigil_bench`, so the data
lives elsewhere) and once into Debian's Prometheus with `promtool tsdb create-blocks-from
openmetrics` (var/bench/prometheus-data/DIGEST). Both loads are kept and reused while
the data set's parameters are unchanged (an interrupted Vigil load resumes where it
stopped); `--reload` drops the database and the blocks and loads again. At full size
the first run loads for about 10 minutes on the 2-core dev machine (Vigil ~3, promtool
~7); later runs go straight to the queries.

Rollups: after the raw load, the raw span's 1m, 1h and 1d tiers are built with the
rollup engine (`materialise_window`), and 1h buckets for the rest of the last
`ROLLUP_DAYS` (30) days are synthesised from the same generator at every 10 s sample
(see "Rollup tiers" below; 1d is then built from them by the engine); the tiers'
watermarks are put at the data's end. Built once per data set (bench.query_rollups;
about 8 minutes at full size, mostly the 14.4M 1m rows), redone by `--reload`.
Prometheus holds only the raw span.

Each query runs over the data's last 30 minutes at step 60 s (a dashboard the planner
answers exactly from raw samples), the last hour at step 15 s, over the whole raw span
at step 60 s and over the last 30 days at step 1 h, `--repeat` times per mode after one
unmeasured request (so both engines read from memory): Vigil cold (`Cache-Control:
no-cache`, its results cache bypassed), Vigil cached (the same request again), and
Prometheus (not over 30 days: it would be timing one day's data). Every figure is the
request's wall time until the whole answer arrived, as p50/p95 in ms. The tiers that
answered are the timed answers' `X-Vigil-Tiers`; the plan's reason and approximations
come from Vigil's own endpoint (`/v1/metrics/query?explain=true`), and the points Vigil
answered are counted (a tier the planner wrongly believes complete shows up as missing
points over 30 days, where Prometheus cannot tell). Vigil's answers are compared with
Prometheus's point by point (over 30 days, at the steps Prometheus answers): agreement
within 1e-9, else the share of differing points and the largest relative difference (a
rollup tier answers rate/histogram_quantile approximately at window edges; that is
reported, not failed). The API's retention settings make each tier reach back, by
today's clock, exactly to where this data set has it (`retention_env`). Targets, on p95:
last hour cold <= 500 ms and cached <= 50 ms; 24 h cold <= 300 ms; 30 days cold <= 500
ms (PASS/MISS per query). Then ingestion throughput (bench/ingest.py's agent shape, into
a fresh `vigil_bench`) is measured without queries and again while a client runs the 1 h
queries cold in a loop; the target is a reduction of <= 10 %.

The last stdout line is one JSON object.

Usage: python bench/query.py [--hosts 100] [--metrics 100] [--hours 24] [--repeat 7]
                             [--reload] [--no-interference] [--interference-seconds 30]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import numpy.typing as npt
import psycopg
import redis
from psycopg import sql
from tabulate import tabulate

from storage import tenants
from storage.database import connect, ensure_database
from storage.errors import MigrationError, TenantExists
from storage.migrations import migrate
from storage.rollups import materialise_window
from storage.samples import SampleBatch, SampleWriter, SeriesColumns
from storage.series import SeriesCatalog, SeriesKey
from vigil.services import local_services
from vigil.settings import PROJECT_ROOT, Settings

BENCH_DIR = Path(__file__).resolve().parent
QUERY_DATABASE = "vigil_bench_query"

# ---------------------------------------------------------------------------------------
# The data set
#
# Every value is a closed-form function of the series and the absolute sample time
# (noise is a hash of both), so any time window can be generated on its own and comes
# out the same: a 30-day data set for rollups is produced window by window, never held
# whole. Values are integers scaled by a power of ten ("units"), so the text handed to
# promtool parses to exactly the float64 Vigil stores.

# Bump when the generator's output changes: cached loads of the old output are redone.
GENERATOR_VERSION = 1
END_TIME_S = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
INTERVAL_S = 10
DAY_S = 86_400
REGIONS = ("us-east", "us-west", "eu-west", "eu-central", "ap-south")
BUCKETS = ("0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf")
# Per host: cpu_usage, http_requests_total, the buckets, then fillers named by position.
FIRST_FILLER = 2 + len(BUCKETS)
MIN_METRICS = FIRST_FILLER + 1

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)


def host_name(host: int) -> str:
    """The `host` label of host number `host`."""
    return f"host-{host:03d}"


def filler_name(position: int) -> str:
    """The metric name of the filler series at this position of a host's list."""
    return f"metric_{position:03d}"


def _mixed(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's finaliser: a bijection of 64-bit integers that scrambles every bit."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _noise(key: int, times_s: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Uniform [0, 1) numbers, one per sample time, a pure function of (key, time)."""
    x = (times_s // INTERVAL_S).astype(np.uint64) * _GOLDEN + _U64(key)
    return (_mixed(x) >> _U64(11)).astype(np.float64) * 2.0**-53


def _cycle(times_s: npt.NDArray[np.int64], period_s: int, phase: float) -> npt.NDArray[np.float64]:
    """The angle of a cycle of this period at each time (reduced first, so it stays exact)."""
    return 2 * math.pi * (times_s % period_s) / period_s + phase


def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    """The share of a log-normal distribution at or below x (1 for +Inf)."""
    if math.isinf(x):
        return 1.0
    return 0.5 * (1 + math.erf(math.log(x / median) / (sigma * math.sqrt(2))))


@dataclass(frozen=True)
class HostBlock:
    """One host's series over a time window: values are `units / 10**decimals`."""

    keys: list[SeriesKey]
    times_s: npt.NDArray[np.int64]
    units: npt.NDArray[np.int64]  # (series, samples)
    decimals: npt.NDArray[np.int64]  # (series,)

    def values(self) -> npt.NDArray[np.float64]:
        """The float64 values, correctly rounded, as any decimal parser reads the text."""
        scale = (10 ** self.decimals.astype(np.float64))[:, None]
        return self.units / scale


@dataclass(frozen=True)
class DataSet:
    """A deterministic fleet: `hosts` x `metrics` series at 10 s, ending at `end_s`."""

    hosts: int = 100
    metrics: int = 100
    hours: int = 24
    seed: int = 1
    end_s: int = END_TIME_S

    @property
    def series(self) -> int:
        return self.hosts * self.metrics

    @property
    def samples_per_series(self) -> int:
        return self.hours * 3600 // INTERVAL_S

    @property
    def samples(self) -> int:
        return self.series * self.samples_per_series

    @property
    def start_s(self) -> int:
        """The first sample's time; the last is at `end_s`."""
        return self.end_s - (self.samples_per_series - 1) * INTERVAL_S

    def digest(self) -> str:
        """Names this data set's contents: equal digests, equal samples."""
        text = json.dumps({**asdict(self), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def times_s(self) -> npt.NDArray[np.int64]:
        """Every sample time of the data set (Unix seconds)."""
        return self.start_s + np.arange(self.samples_per_series, dtype=np.int64) * INTERVAL_S

    def host_keys(self, host: int) -> list[SeriesKey]:
        """The host's series, in the order of its block's rows."""
        labels = {
            "host": host_name(host),
            "region": REGIONS[host % len(REGIONS)],
            "env": "staging" if host % 10 == 9 else "prod",
        }
        return [
            SeriesKey.of("cpu_usage", labels),
            SeriesKey.of("http_requests_total", labels),
            *(
                SeriesKey.of("http_request_duration_seconds_bucket", {**labels, "le": le})
                for le in BUCKETS
            ),
            *(SeriesKey.of(filler_name(p), labels) for p in range(FIRST_FILLER, self.metrics)),
        ]

    def host_block(self, host: int, times_s: npt.NDArray[np.int64] | None = None) -> HostBlock:
        """The host's samples at the given times (default: the whole data set)."""
        times = self.times_s() if times_s is None else times_s
        rows: list[npt.NDArray[np.int64]] = []
        decimals: list[int] = []

        def rng(position: int) -> np.random.Generator:
            return np.random.default_rng([self.seed, host, position])

        def key(generator: np.random.Generator) -> int:
            return int(generator.integers(2**63))

        # Counters restart with their process: a host's counters all reset together,
        # every 12-96 h (some hosts never within a day).
        schedule = np.random.default_rng([self.seed, host])
        period = int(schedule.integers(12 * 360, 96 * 360)) * INTERVAL_S
        offset = int(schedule.integers(period // INTERVAL_S)) * INTERVAL_S
        resets = offset + (times - offset) // period * period

        def counter(generator: np.random.Generator, per_s: float) -> npt.NDArray[np.float64]:
            """Increase since the last reset of a jittered, diurnal, monotone counter.

            G(t) = rate t - amplitude cos(wt + phase) + jitter u(t) rises by at least a
            tenth of rate x interval per step: |d cos| <= w dt bounds the wave, and the
            jitter is under half a step's increase.
            """
            phase = float(generator.uniform(0, 2 * math.pi))
            amplitude = 0.5 * per_s * DAY_S / (2 * math.pi)
            noise_key, jitter = key(generator), 0.4 * per_s * INTERVAL_S

            def level(at: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
                wave = -amplitude * np.cos(_cycle(at, DAY_S, phase))
                return wave + jitter * _noise(noise_key, at)

            return per_s * (times - resets) + level(times) - level(resets)

        cpu = rng(0)
        base, region_phase = cpu.uniform(0.3, 0.6), 2 * math.pi * (host % len(REGIONS)) / 5
        usage = base + 0.25 * np.sin(_cycle(times, DAY_S, region_phase))
        usage += 0.08 * (_noise(key(cpu), times) - 0.5)
        rows.append(np.rint(np.clip(usage, 0.0, 1.0) * 1e6).astype(np.int64))
        decimals.append(6)

        # Requests are fast ones and slow ones whose mix follows the day, each with its
        # own log-normal latency; bucket `le` counts floor(fast x cdf_fast + slow x cdf_slow),
        # so buckets rise with le, +Inf equals http_requests_total, and p99 moves.
        traffic = rng(1)
        per_s, latency_scale = float(traffic.uniform(50, 500)), float(traffic.uniform(0.7, 1.5))
        fast, slow = counter(traffic, 0.9 * per_s), counter(traffic, 0.1 * per_s)
        rows.append(np.floor(fast + slow).astype(np.int64))
        decimals.append(0)
        for le in BUCKETS:
            fast_share = _lognormal_cdf(float(le), 0.04 * latency_scale, 0.6)
            slow_share = _lognormal_cdf(float(le), 0.6 * latency_scale, 0.8)
            rows.append(np.floor(fast * fast_share + slow * slow_share).astype(np.int64))
            decimals.append(0)

        for position in range(FIRST_FILLER, self.metrics):
            filler = rng(position)
            if position % 2:
                rows.append(
                    np.floor(counter(filler, float(10 ** filler.uniform(0, 3)))).astype(np.int64)
                )
                decimals.append(0)
                continue
            level = 10 ** filler.uniform(0, 3)
            period_s = int(filler.choice([3600, 6 * 3600, DAY_S]))
            wave = 0.2 * np.sin(_cycle(times, period_s, float(filler.uniform(0, 2 * math.pi))))
            gauge = level * (1 + wave + 0.05 * (_noise(key(filler), times) - 0.5))
            rows.append(np.rint(gauge * 1e3).astype(np.int64))
            decimals.append(3)

        return HostBlock(self.host_keys(host), times, np.stack(rows), np.array(decimals, np.int64))


# ---------------------------------------------------------------------------------------
# Loading into Vigil


@dataclass(frozen=True)
class VigilData:
    """Where a loaded data set lives in Vigil and how to query it."""

    database_url: str
    tenant: str
    api_key: str


def bench_database(settings: Settings, reload: bool, database: str = QUERY_DATABASE) -> str:
    """A benchmark database (default: the query benchmark's), migrated (recreated empty
    when `reload`), with the `bench` schema that records completed loads."""
    parts = urlsplit(settings.database_url)
    url = urlunsplit(parts._replace(path=f"/{database}"))
    if reload:
        with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
    ensure_database(url)
    with connect(url) as conn:
        try:
            migrate(conn, samples_chunk_interval=settings.storage.samples_chunk_interval)
        except MigrationError as exc:
            sys.exit(
                f"bench: {database}: {exc}. It was migrated from another "
                "checkout; --reload recreates it (and loads the data again)"
            )
        conn.execute(
            """
            CREATE SCHEMA IF NOT EXISTS bench;
            CREATE TABLE IF NOT EXISTS bench.query_dataset (
                digest      text PRIMARY KEY,
                parameters  jsonb NOT NULL,
                samples     bigint NOT NULL,
                load_s      double precision NOT NULL,
                loaded_at   timestamptz NOT NULL DEFAULT now()
            );
            CREATE TABLE IF NOT EXISTS bench.query_rollups (
                digest      text NOT NULL,
                version     integer NOT NULL,
                report      jsonb NOT NULL,
                built_at    timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (digest, version)
            );
            CREATE TABLE IF NOT EXISTS bench.query_rollup_steps (
                digest      text NOT NULL,
                version     integer NOT NULL,
                step        text NOT NULL,
                PRIMARY KEY (digest, version, step)
            );
            """
        )
    return url


def clear_cached_results(settings: Settings, data: VigilData) -> int:
    """Drop the data set's tenant's cached query results (the API's default prefix), so
    every run starts cold and never reads blocks an older build encoded; the count."""
    with connect(data.database_url) as conn:
        row = conn.execute("SELECT id FROM vigil.tenant WHERE name = %s", (data.tenant,)).fetchone()
    assert row is not None
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    dropped = 0
    for pattern in (f"vigil:qc:{row[0]}:*", f"vigil:qc:idx:{row[0]}:*"):
        for key in client.scan_iter(match=pattern, count=1000):
            dropped += client.delete(key)
    client.close()
    return dropped


def tenant_key(conn: psycopg.Connection, name: str, keys_file: Path) -> tuple[tenants.Tenant, str]:
    """The tenant named `name` (created if missing) and an API key of it, kept in keys_file.

    Keys are shown only when issued, so the file keeps them; a tenant whose key was lost
    gets another one.
    """
    keys = json.loads(keys_file.read_text()) if keys_file.exists() else {}
    try:
        issued = tenants.create_tenant(conn, name)
    except TenantExists:
        tenant = tenants.get_tenant(conn, name)
        if keys.get(name, {}).get("tenant_id") == str(tenant.id):
            return tenant, keys[name]["api_key"]
        issued = tenants.create_api_key(conn, name)
    keys[name] = {"tenant_id": str(issued.tenant.id), "api_key": issued.key}
    keys_file.touch(mode=0o600)
    keys_file.chmod(0o600)  # as the demo's key file: readable by its owner only
    keys_file.write_text(json.dumps(keys, indent=2) + "\n")
    return issued.tenant, issued.key


def load_vigil(dataset: DataSet, url: str, keys_file: Path) -> tuple[VigilData, dict[str, Any]]:
    """The data set in Vigil: loaded unless a completed load of the same digest is recorded.

    One host is one batch whose key the write ledger keeps, so an interrupted load is
    resumed by running again: hosts already stored are recognised and skipped.
    """
    digest = dataset.digest()
    name = f"bench-q-{digest}"
    writer = SampleWriter(SeriesCatalog())
    with connect(url) as conn:
        tenant, api_key = tenant_key(conn, name, keys_file)
        data = VigilData(url, name, api_key)
        done = conn.execute(
            "SELECT samples, load_s FROM bench.query_dataset WHERE digest = %s", (digest,)
        ).fetchone()
        if done is not None:
            print(f"vigil: data set {digest} already loaded ({done[0]:,} samples)", flush=True)
            return data, {"skipped": True, "samples": done[0], "load_s": round(done[1], 1)}
        began = time.perf_counter()
        written = skipped = 0
        times_us = np.tile(dataset.times_s() * 1_000_000, dataset.metrics)
        for host in range(dataset.hosts):
            block = dataset.host_block(host)
            keys = block.keys
            columns = SeriesColumns(
                fingerprints=[k.fingerprint() for k in keys],
                key_of=keys.__getitem__,
                counts=np.full(len(keys), len(block.times_s), np.int64),
                times_us=times_us,
                values=block.values().ravel(),
            )
            result = writer.write(conn, SampleBatch(f"host-{host:05d}", tenant.id, columns))
            skipped += result.duplicate
            written += 0 if result.duplicate else result.samples
            if (host + 1) % 10 == 0 or host + 1 == dataset.hosts:
                elapsed = time.perf_counter() - began
                print(
                    f"vigil: {host + 1}/{dataset.hosts} hosts, {written:,} samples written "
                    f"({written / elapsed:,.0f}/s)",
                    flush=True,
                )
        load_s = time.perf_counter() - began
        # What autovacuum would soon do on its own: statistics for the planner and a
        # visibility map for index-only scans, so the figures do not depend on when it ran.
        began = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) vigil.samples_raw")
        conn.execute("ANALYZE vigil.series")
        vacuum_s = time.perf_counter() - began
        conn.execute(
            "INSERT INTO bench.query_dataset (digest, parameters, samples, load_s) "
            "VALUES (%s, %s, %s, %s)",
            (digest, json.dumps(asdict(dataset)), dataset.samples, load_s),
        )
    rate = written / load_s if load_s else 0.0
    print(
        f"vigil: loaded {written:,} samples in {load_s:,.1f} s ({rate:,.0f} samples/s; "
        f"{skipped} hosts were already stored); vacuum + analyze {vacuum_s:,.1f} s",
        flush=True,
    )
    return data, {
        "skipped": False,
        "samples": written,
        "load_s": round(load_s, 1),
        "samples_per_s": round(rate),
        "vacuum_analyze_s": round(vacuum_s, 1),
    }


# ---------------------------------------------------------------------------------------
# Rollup tiers: built from the raw day, synthesised for the days before it
#
# The raw span's tiers are built by the rollup engine itself (`materialise_window`:
# 1m from raw hour by hour, 1h from 1m, 1d from 1h). The `ROLLUP_DAYS` before the
# data's end that raw does not cover get 1h buckets computed here from the generator,
# exactly as the engine would compute them from raw: the generator is evaluated at
# every 10 s sample (360 per bucket, one host-day at a time: ~0.05 s per 864k values,
# so 29 days of 10k series take ~2 min rather than needing a shortcut), aggregated
# with numpy and COPYed into vigil.rollup_1h; 1d is then built from 1h by the engine.
# Only float summation order differs from the engine's (its sums run in scan order):
# `check_synthesis` synthesises the raw span's hours too and compares them with what
# the engine built from raw.

# Bump when the synthesised rows or the tier build change: built tiers are redone.
ROLLUP_VERSION = 1
ROLLUP_DAYS = 30
HOUR_S = 3600
SAMPLES_PER_HOUR = HOUR_S // INTERVAL_S
US = 1_000_000

# A rollup row in binary COPY: field count, then (length, value) per column, big-endian,
# in vigil.rollup_1h's column order (sql/0006_rollups.sql).
_ROLLUP_COLUMNS = (
    ("bucket", ">i8"),
    ("series_id", ">i8"),
    ("samples", ">i4"),
    ("sum", ">f8"),
    ("min", ">f8"),
    ("max", ">f8"),
    ("first_time", ">i8"),
    ("first_value", ">f8"),
    ("last_time", ">i8"),
    ("last_value", ">f8"),
    ("reset_correction", ">f8"),
    ("increase", ">f8"),
)
ROLLUP_ROW = np.dtype(
    [("fields", ">i2")]
    + [field for name, kind in _ROLLUP_COLUMNS for field in ((f"{name}_len", ">i4"), (name, kind))]
)
_PG_EPOCH_US = 946_684_800_000_000
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_COPY_TRAILER = b"\xff\xff"


@dataclass(frozen=True)
class HourlyRollups:
    """1h rollup rows of one host over whole hours, as (series, hours) arrays."""

    bucket_s: npt.NDArray[np.int64]  # (hours,): bucket ends
    samples: int
    sum: npt.NDArray[np.float64]
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    first_value: npt.NDArray[np.float64]
    last_value: npt.NDArray[np.float64]
    reset_correction: npt.NDArray[np.float64]

    @property
    def increase(self) -> npt.NDArray[np.float64]:
        return self.last_value - self.first_value + self.reset_correction


def hourly_rollups(dataset: DataSet, host: int, low_s: int, high_s: int) -> HourlyRollups:
    """The 1h buckets ending in (low, high] of a host's series, from every sample in them.

    As storage/rollups.sql computes them from raw: a bucket (end - 1 h, end] holds 360
    samples (no NaN or stale marker in this data); the reset correction adds the
    previous value at every drop between consecutive samples, for every series (the
    engine does not know which are counters), and increase = last - first + correction.
    Sums add each minute's six samples first, then the minutes, as 1h-from-1m does.
    """
    hours = (high_s - low_s) // HOUR_S
    times = low_s + INTERVAL_S + np.arange(hours * SAMPLES_PER_HOUR, dtype=np.int64) * INTERVAL_S
    values = dataset.host_block(host, times).values().reshape(-1, hours, SAMPLES_PER_HOUR)
    previous, current = values[..., :-1], values[..., 1:]
    minutes = values.reshape(*values.shape[:2], 60, SAMPLES_PER_HOUR // 60).sum(axis=-1)
    return HourlyRollups(
        bucket_s=low_s + HOUR_S * np.arange(1, hours + 1, dtype=np.int64),
        samples=SAMPLES_PER_HOUR,
        sum=minutes.sum(axis=-1),
        min=values.min(axis=-1),
        max=values.max(axis=-1),
        first_value=values[..., 0],
        last_value=values[..., -1],
        reset_correction=np.where(current < previous, previous, 0.0).sum(axis=-1),
    )


def encode_rollups(series_ids: npt.NDArray[np.int64], rollups: HourlyRollups) -> bytes:
    """A host's hourly rows as binary COPY rows (no header or trailer)."""
    series, hours = rollups.sum.shape
    rows = np.zeros(series * hours, dtype=ROLLUP_ROW)
    rows["fields"] = len(_ROLLUP_COLUMNS)
    for name, kind in _ROLLUP_COLUMNS:
        rows[f"{name}_len"] = np.dtype(kind).itemsize
    end_us = np.tile(rollups.bucket_s * US - _PG_EPOCH_US, series)
    rows["bucket"] = end_us
    rows["series_id"] = np.repeat(series_ids, hours)
    rows["samples"] = rollups.samples
    rows["first_time"] = end_us - (HOUR_S - INTERVAL_S) * US
    rows["last_time"] = end_us
    for name in ("sum", "min", "max", "first_value", "last_value", "reset_correction"):
        rows[name] = getattr(rollups, name).ravel()
    rows["increase"] = rollups.increase.ravel()
    return rows.tobytes()


def series_ids(conn: psycopg.Connection, tenant: str) -> dict[bytes, int]:
    """The tenant's series ids by fingerprint."""
    rows = conn.execute(
        "SELECT s.fingerprint, s.id FROM vigil.series AS s JOIN vigil.tenant AS t "
        "ON t.id = s.tenant_id WHERE t.name = %s",
        (tenant,),
    )
    return {bytes(fingerprint): series_id for fingerprint, series_id in rows}


def host_series_ids(dataset: DataSet, host: int, ids: dict[bytes, int]) -> npt.NDArray[np.int64]:
    """The series ids of a host's block rows."""
    return np.array([ids[key.fingerprint()] for key in dataset.host_keys(host)], np.int64)


class BuildSteps:
    """The units of a data set's rollup build already done (bench.query_rollup_steps), so
    a build interrupted by a server restart resumes instead of starting over."""

    def __init__(self, conn: psycopg.Connection, digest: str) -> None:
        self._conn, self._digest = conn, digest
        self.skipped = 0

    def done(self, step: str) -> bool:
        found = self._conn.execute(
            "SELECT 1 FROM bench.query_rollup_steps WHERE digest = %s AND version = %s "
            "AND step = %s",
            (self._digest, ROLLUP_VERSION, step),
        ).fetchone()
        self.skipped += found is not None
        return found is not None

    def mark(self, step: str) -> None:
        """Record a step as done, in the transaction that did it."""
        self._conn.execute(
            "INSERT INTO bench.query_rollup_steps (digest, version, step) VALUES (%s, %s, %s)",
            (self._digest, ROLLUP_VERSION, step),
        )


def synthesise_hours(
    conn: psycopg.Connection,
    dataset: DataSet,
    ids: dict[bytes, int],
    low_s: int,
    high_s: int,
    steps: BuildSteps | None = None,
) -> int:
    """COPY the data set's 1h buckets ending in (low, high] into vigil.rollup_1h, a day per
    transaction that first deletes the day's rows of these series (days `steps` has
    recorded are skipped); returns the rows written."""
    written = 0
    every = np.concatenate([host_series_ids(dataset, h, ids) for h in range(dataset.hosts)])
    for day_low in range(low_s, high_s, DAY_S):
        day_high = min(day_low + DAY_S, high_s)
        step = f"1h synthesised {_day(day_low)}"
        if steps is not None and steps.done(step):
            continue
        began = time.perf_counter()
        with conn.transaction():
            conn.execute(
                "DELETE FROM vigil.rollup_1h WHERE bucket > %s AND bucket <= %s "
                "AND series_id = ANY(%s)",
                (_at(day_low), _at(day_high), every.tolist()),
            )
            with conn.cursor().copy("COPY vigil.rollup_1h FROM STDIN (FORMAT binary)") as copy:
                copy.write(_COPY_HEADER)
                for host in range(dataset.hosts):
                    rollups = hourly_rollups(dataset, host, day_low, day_high)
                    copy.write(encode_rollups(host_series_ids(dataset, host, ids), rollups))
                    written += rollups.sum.size
                copy.write(_COPY_TRAILER)
            if steps is not None:
                steps.mark(step)
        print(
            f"rollups: synthesised 1h {_day(day_low)}..{_day(day_high)}: "
            f"{written:,} rows so far ({time.perf_counter() - began:.1f} s)",
            flush=True,
        )
    return written


def check_synthesis(
    conn: psycopg.Connection, dataset: DataSet, ids: dict[bytes, int], low_s: int, high_s: int
) -> dict[str, float]:
    """Max relative difference, per column, between hours synthesised here and the ones
    the engine built from raw (via 1m) for (low, high], over a sample of hosts."""
    worst: dict[str, float] = {}
    for host in range(0, dataset.hosts, max(1, dataset.hosts // 10)):
        mine = hourly_rollups(dataset, host, low_s, high_s)
        ids_of = host_series_ids(dataset, host, ids)
        rows = conn.execute(
            "SELECT series_id, extract(epoch FROM bucket)::bigint, samples, sum, min, max, "
            "first_value, last_value, reset_correction, increase FROM vigil.rollup_1h "
            "WHERE series_id = ANY(%s) AND bucket > %s AND bucket <= %s",
            (ids_of.tolist(), _at(low_s), _at(high_s)),
        ).fetchall()
        if len(rows) != mine.sum.size:
            raise RuntimeError(f"host {host}: {len(rows)} 1h rows built, {mine.sum.size} expected")
        row_of = {int(series_id): row for row, series_id in enumerate(ids_of)}
        hour_of = {int(b): col for col, b in enumerate(mine.bucket_s)}
        for series_id, bucket, samples, *columns in rows:
            at = (row_of[series_id], hour_of[bucket])
            if samples != mine.samples:
                raise RuntimeError(f"series {series_id} at {bucket}: {samples} samples")
            for name, theirs in zip(
                ("sum", "min", "max", "first_value", "last_value", "reset_correction", "increase"),
                columns,
                strict=True,
            ):
                ours = float(getattr(mine, name)[at])
                difference = abs(ours - theirs) / max(abs(theirs), 1e-12) if ours != theirs else 0
                worst[name] = max(worst.get(name, 0.0), difference)
    return worst


def build_rollups(dataset: DataSet, data: VigilData) -> dict[str, Any]:
    """The 1m/1h/1d tiers of the raw span and 1h/1d of the `ROLLUP_DAYS` before its end,
    with the tiers' watermarks at the data's end; skipped when already built."""
    digest = dataset.digest()
    raw_low_s, end_s = dataset.end_s - dataset.hours * HOUR_S, dataset.end_s
    first_s = min(raw_low_s, end_s - ROLLUP_DAYS * DAY_S)
    if end_s % DAY_S:
        raise ValueError("the data set must end at midnight UTC for whole 1d buckets")
    with connect(data.database_url) as conn:
        done = conn.execute(
            "SELECT report FROM bench.query_rollups WHERE digest = %s AND version = %s",
            (digest, ROLLUP_VERSION),
        ).fetchone()
        if done is not None:
            print(f"rollups: data set {digest} already has its tiers", flush=True)
            return {"skipped": True, **done[0]}
        report: dict[str, Any] = {}
        steps = BuildSteps(conn, digest)
        began = time.perf_counter()
        rows = 0
        for low in range(raw_low_s, end_s, HOUR_S):
            step = f"1m from raw {_day(low)}"
            if steps.done(step):
                continue
            with conn.transaction():
                rows += materialise_window(conn, "1m", low * US, (low + HOUR_S) * US)
                steps.mark(step)
            if (low + HOUR_S - raw_low_s) % (6 * HOUR_S) == 0:
                print(f"rollups: 1m from raw up to {_day(low + HOUR_S)}: {rows:,} rows", flush=True)
        report["1m_from_raw"] = {"rows": rows, "s": round(time.perf_counter() - began, 1)}
        print(f"rollups: 1m from raw: {rows:,} rows in {report['1m_from_raw']['s']} s", flush=True)
        began = time.perf_counter()
        rows = materialise_window(conn, "1h", raw_low_s * US, end_s * US)
        report["1h_from_1m"] = {"rows": rows, "s": round(time.perf_counter() - began, 1)}
        ids = series_ids(conn, data.tenant)
        began = time.perf_counter()
        rows = synthesise_hours(conn, dataset, ids, first_s, raw_low_s, steps)
        report["1h_synthesised"] = {
            "rows": rows,
            "s": round(time.perf_counter() - began, 1),
            "from": _day(first_s),
            "to": _day(raw_low_s),
        }
        began = time.perf_counter()
        rows = materialise_window(conn, "1d", first_s * US, end_s * US)
        report["1d_from_1h"] = {"rows": rows, "s": round(time.perf_counter() - began, 1)}
        for tier in ("1m", "1h", "1d"):
            conn.execute(
                "UPDATE vigil.rollup_watermark SET claimed_to = %(to)s, materialised_to = %(to)s, "
                "updated_at = now() WHERE tier = %(tier)s",
                {"tier": tier, "to": _at(end_s)},
            )
        for table in ("rollup_1m", "rollup_1h", "rollup_1d"):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier("vigil", table)))
        report["synthesis_max_relative_difference"] = check_synthesis(
            conn, dataset, ids, raw_low_s, end_s
        )
        report["steps_resumed"] = steps.skipped
        conn.execute(
            "INSERT INTO bench.query_rollups (digest, version, report) VALUES (%s, %s, %s)",
            (digest, ROLLUP_VERSION, json.dumps(report)),
        )
    print(f"rollups: built {json.dumps(report)}", flush=True)
    return {"skipped": False, **report}


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _day(seconds: int) -> str:
    return f"{_at(seconds):%Y-%m-%dT%H:%M}Z"


# ---------------------------------------------------------------------------------------
# Loading into Prometheus


def _digits(numbers: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.uint8]:
    """Non-negative integers as zero-padded ASCII digits, one row of `width` per number."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (numbers[:, None] // powers % 10 + ord("0")).astype(np.uint8)


def openmetrics_lines(
    key: SeriesKey, times_s: npt.NDArray[np.int64], units: npt.NDArray[np.int64], decimals: int
) -> bytes:
    """One series' samples as OpenMetrics lines, built as a byte matrix by numpy.

    Values are fixed-width decimals with leading zeros (`0012.345`), which Go's
    ParseFloat reads as the decimal it is, so Prometheus gets Vigil's exact float64.
    """
    labels = ",".join(f'{name}="{value}"' for name, value in key.labels)
    prefix = np.frombuffer(f"{key.metric}{{{labels}}} ".encode(), np.uint8)
    width = max(len(str(int(units.max()))), decimals + 1)
    value = _digits(units, width)
    if decimals:
        point = np.full((len(units), 1), ord("."), np.uint8)
        value = np.hstack([value[:, : width - decimals], point, value[:, width - decimals :]])
    assert times_s.max() < 10**10, "timestamps are written as ten digits"
    rows = len(units)
    line = np.hstack(
        [
            np.broadcast_to(prefix, (rows, len(prefix))),
            value,
            np.full((rows, 1), ord(" "), np.uint8),
            _digits(times_s, 10),
            np.full((rows, 1), ord("\n"), np.uint8),
        ]
    )
    return line.tobytes()


def write_openmetrics(dataset: DataSet, path: Path) -> int:
    """The data set as an OpenMetrics file, each series' samples in time order; its size."""
    with path.open("wb") as out:
        for host in range(dataset.hosts):
            block = dataset.host_block(host)
            for row, key in enumerate(block.keys):
                out.write(
                    openmetrics_lines(
                        key, block.times_s, block.units[row], int(block.decimals[row])
                    )
                )
        out.write(b"# EOF\n")
        return out.tell()


def load_prometheus(dataset: DataSet, data_dir: Path, work_dir: Path) -> dict[str, Any]:
    """Prometheus blocks of the data set in data_dir, unless its marker says they are there.

    Each data set has its own folder, so a small run never costs the full one its blocks.
    """
    marker = data_dir / "bench-dataset.json"
    digest = dataset.digest()
    if marker.exists():
        print(f"prometheus: data set {digest} already backfilled", flush=True)
        return {"skipped": True}
    shutil.rmtree(data_dir, ignore_errors=True)  # an interrupted backfill's blocks
    data_dir.mkdir(parents=True)
    text = work_dir / f"{digest}.om"
    try:
        began = time.perf_counter()
        size = write_openmetrics(dataset, text)
        write_s = time.perf_counter() - began
        print(
            f"prometheus: wrote {size / 2**20:,.0f} MiB of OpenMetrics in {write_s:,.1f} s",
            flush=True,
        )
        began = time.perf_counter()
        with (work_dir / "promtool.log").open("wb") as log:
            subprocess.run(
                ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(text), str(data_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
            )
        promtool_s = time.perf_counter() - began
    finally:
        text.unlink(missing_ok=True)
    marker.write_text(json.dumps({"digest": digest, **asdict(dataset)}) + "\n")
    print(
        f"prometheus: promtool built blocks in {promtool_s:,.1f} s "
        f"({dataset.samples / promtool_s:,.0f} samples/s)",
        flush=True,
    )
    return {
        "skipped": False,
        "openmetrics_mib": round(size / 2**20),
        "openmetrics_write_s": round(write_s, 1),
        "promtool_s": round(promtool_s, 1),
        "promtool_samples_per_s": round(dataset.samples / promtool_s),
    }


# ---------------------------------------------------------------------------------------
# Servers


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(url: str, timeout_s: float, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once GET url answers 200; fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}: see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} was not ready after {timeout_s:.0f} s: see {log}")


@contextmanager
def running(args: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[None]:
    """A server process for the duration of the block, ready before the block starts."""
    process = subprocess.Popen(
        args,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=PROJECT_ROOT,
    )
    try:
        wait_until(ready_url, 120, process, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def prometheus_command(data_dir: Path, work_dir: Path, port: int) -> list[str]:
    """Prometheus serving the backfilled blocks, scraping nothing.

    Retention counts back from the newest block, not from now, so old data stays; 10y
    only keeps Prometheus from ever planning a deletion. Blocks stay the 2 h ones
    promtool wrote: left to itself, Prometheus merges them into 6 h and 18 h blocks in
    the background about a minute after it starts, which would land in the timings.
    A long-running Prometheus would have merged them, so its 24 h figures here read
    twelve blocks instead of two (slightly slower); a 1 h query reads one either way.
    """
    config = work_dir / "prometheus.yml"
    config.write_text(
        "# No scrape targets: the query benchmark's data is backfilled.\nglobal: {}\n"
    )
    return [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=10y",
        "--storage.tsdb.min-block-duration=2h",
        "--storage.tsdb.max-block-duration=2h",
    ]


# ---------------------------------------------------------------------------------------
# Queries


QUERIES = (
    ("single series", 'cpu_usage{host="host-000"}'),
    ("avg in a region", 'avg(cpu_usage{region="us-east"})'),
    ("request rate by region", "sum by (region) (rate(http_requests_total[5m]))"),
    (
        "p99 latency",
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    ("topk of max_over_time", "topk(5, max_over_time(cpu_usage[10m]))"),
    ("max of region averages", "max by (region) (avg_over_time(cpu_usage[5m]))"),
    ("regex over all hosts", filler_name(FIRST_FILLER) + '{host=~"host-[0-9]+"}'),
)
INTERFERENCE_TARGET = 0.10
# As tests/querylang/test_prometheus_comparison.py compares answers.
RELATIVE_TOLERANCE = 1e-9
ABSOLUTE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Window:
    """A query range: the data's last `seconds`, evaluated every `step_s`, with its p95
    targets (None: none) and whether Prometheus holds all of it (else it holds only the
    raw span: its answer is compared where it has points, and not timed)."""

    label: str
    seconds: int
    step_s: int
    cold_target_ms: float | None = None
    cached_target_ms: float | None = None
    prometheus_holds_all: bool = True

    def target_text(self) -> str:
        parts = [f"cold <= {self.cold_target_ms:g}"] if self.cold_target_ms else []
        if self.cached_target_ms:
            parts.append(f"cached <= {self.cached_target_ms:g}")
        return ", ".join(parts) + " ms" if parts else "-"

    def params(self, dataset: DataSet, expr: str) -> dict[str, str]:
        return {
            "query": expr,
            "start": str(dataset.end_s - self.seconds),
            "end": str(dataset.end_s),
            "step": str(self.step_s),
        }


def windows(dataset: DataSet) -> list[Window]:
    """The last 30 minutes at 60 s and the last hour at 15 s (raw), the whole raw span
    at 60 s (the 24 h target), and `ROLLUP_DAYS` at 1 h (rollups; Prometheus holds
    only the raw span)."""
    found = [
        # A Grafana dashboard's last 30 minutes at 60 s: raw samples are affordable here,
        # so the planner answers exactly, as Prometheus does (no target of its own).
        Window("30m", HOUR_S // 2, 60),
        Window("1h", HOUR_S, 15, cold_target_ms=500, cached_target_ms=50),
    ]
    if dataset.hours > 1:
        found.append(Window(f"{dataset.hours}h", dataset.hours * HOUR_S, 60, cold_target_ms=300))
    found.append(
        Window(
            f"{ROLLUP_DAYS}d",
            ROLLUP_DAYS * DAY_S,
            HOUR_S,
            cold_target_ms=500,
            prometheus_holds_all=dataset.hours >= ROLLUP_DAYS * 24,
        )
    )
    return found


class QueryFailed(Exception):
    """An engine answered a query with an error."""


@dataclass
class Timings:
    """Wall times of one query in one mode, or the error it got."""

    seconds: list[float] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    error: str | None = None
    tiers: str | None = None  # Vigil's X-Vigil-Tiers of the last answer

    def percentile_ms(self, q: float) -> float | None:
        return round(float(np.percentile(self.seconds, q)) * 1000, 1) if self.seconds else None


class Engine:
    """A Prometheus-compatible query endpoint."""

    def __init__(self, name: str, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.name = name
        self._client = httpx.Client(base_url=base_url, headers=headers or {}, timeout=120)

    def query_range(
        self, params: dict[str, str], headers: dict[str, str] | None = None
    ) -> tuple[float, httpx.Response]:
        """The answer and its wall time until the last byte arrived."""
        began = time.perf_counter()
        response = self._client.get("/api/v1/query_range", params=params, headers=headers)
        return time.perf_counter() - began, response

    def instant(self, expr: str, at_s: int) -> float | None:
        """The single value an instant query answers at at_s (None when it answers none)."""
        response = self._client.get("/api/v1/query", params={"query": expr, "time": str(at_s)})
        if response.status_code != 200:
            raise QueryFailed(f"{self.name}: {expr}: {response.status_code} {response.text[:200]}")
        result = response.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def plan(self, params: dict[str, str]) -> dict[str, Any]:
        """What Vigil's own endpoint says of a range query (cold): the tiers that
        answered, where they are approximate, and the plan's reason (explain)."""
        response = self._client.get(
            "/v1/metrics/query", params={**params, "explain": "true"}, headers=NO_CACHE
        )
        if response.status_code != 200:
            return {"tiers": [f"error {response.status_code}"], "reason": response.text[:200]}
        body = response.json()
        plan = body.get("explain", {}).get("plan", {})
        return {
            "tiers": list(body.get("tiers", [])),
            "approximations": body.get("approximations", []),
            "reason": plan.get("reason"),
        }

    def measure(
        self, params: dict[str, str], repeat: int, headers: dict[str, str] | None = None
    ) -> Timings:
        """`repeat` timed requests after one untimed one; the last answer is kept (for a
        cached query, one the cache served)."""
        timings = Timings()
        for attempt in range(repeat + 1):
            seconds, response = self.query_range(params, headers)
            if response.status_code != 200:
                timings.error = f"{response.status_code} {response.text[:200]}"
                return timings
            if attempt:
                timings.seconds.append(seconds)
        timings.answer = response.json()
        timings.tiers = response.headers.get("X-Vigil-Tiers")
        return timings

    def close(self) -> None:
        self._client.close()


NO_CACHE = {"Cache-Control": "no-cache"}
RETENTION_SLACK_S = 15 * 60


def retention_env(dataset: DataSet, now_s: int) -> dict[str, str]:
    """Each tier's retention as the API's settings, so that by today's clock a tier
    reaches back exactly to where this data set has it: raw and 1m to the raw span's
    start, 1h and 1d `ROLLUP_DAYS` before the end (plus a slack for the run's own
    duration, as the window's start moves with the clock).

    The planner takes a tier to hold everything from now - retention up to its
    watermark. A longer retention (say 3650d everywhere) would make it pick 1m for a
    30-day rate[5m] (it prefers tiers no coarser than the range window), and read 29
    empty days: here 1m exists for the raw day only, as in production it exists for
    its 14 days only.
    """
    raw_s = now_s - (dataset.end_s - dataset.hours * HOUR_S) + RETENTION_SLACK_S
    rollup_s = now_s - (dataset.end_s - max(ROLLUP_DAYS * DAY_S, dataset.hours * HOUR_S))
    rollup_s += RETENTION_SLACK_S
    return {
        "VIGIL_RETENTION__RAW": f"{raw_s}s",
        "VIGIL_RETENTION__ROLLUP_1M": f"{raw_s}s",
        "VIGIL_RETENTION__ROLLUP_1H": f"{rollup_s}s",
        "VIGIL_RETENTION__ROLLUP_1D": f"{rollup_s}s",
    }


def points(answer: dict[str, Any]) -> dict[tuple[tuple[str, str], ...], dict[int, float]]:
    """A matrix answer as {label set: {time in ms: value}}."""
    return {
        tuple(sorted(item["metric"].items())): {
            round(float(t) * 1000): float(v) for t, v in item["values"]
        }
        for item in answer["data"]["result"]
    }


@dataclass(frozen=True)
class Agreement:
    """How Vigil's answer compares with Prometheus's for one query.

    `max_relative_difference` is over the points both sides have as numbers (a rollup
    tier answers rate and histogram_quantile approximately at window edges); `overlap`
    says only the step times Prometheus answered were compared.
    """

    series: int
    missing_series: int
    extra_series: int
    points: int
    differing_points: int
    max_relative_difference: float = 0.0
    overlap: bool = False

    @property
    def exact(self) -> bool:
        return not (self.missing_series or self.extra_series or self.differing_points)

    def text(self) -> str:
        scope = " where prom has data" if self.overlap else ""
        if self.exact:
            return f"yes ({self.series} series, {self.points} pts{scope})"
        text = (
            f"{self.differing_points}/{self.points} pts{scope} differ, "
            f"max rel {self.max_relative_difference:.2g}"
        )
        if self.missing_series or self.extra_series:
            text += f"; series: {self.missing_series} missing, {self.extra_series} extra"
        return text


def agreement(
    vigil: dict[str, Any], prometheus: dict[str, Any], overlap: bool = False
) -> Agreement:
    """Same label sets, same step times, values within 1e-9 relative (1e-12 absolute near
    zero; NaN equals NaN).

    A point present on one side only counts as differing; so does every point of a
    series the other side lacks. With `overlap`, only the step times at which
    Prometheus answered anything are compared (it holds a shorter span than Vigil).
    """
    ours, theirs = points(vigil), points(prometheus)
    if overlap:
        times = {at for values in theirs.values() for at in values}
        ours = {
            labels: kept
            for labels, values in ours.items()
            if (kept := {at: v for at, v in values.items() if at in times})
        }
    total = differing = 0
    worst = 0.0
    for labels in ours.keys() | theirs.keys():
        mine, reference = ours.get(labels, {}), theirs.get(labels, {})
        for at in mine.keys() | reference.keys():
            total += 1
            a, b = mine.get(at), reference.get(at)
            if a is not None and b is not None and math.isfinite(a) and math.isfinite(b) and a != b:
                worst = max(worst, abs(a - b) / max(abs(b), ABSOLUTE_TOLERANCE))
            if (
                a is None
                or b is None
                or not (
                    (math.isnan(a) and math.isnan(b))
                    or math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=ABSOLUTE_TOLERANCE)
                )
            ):
                differing += 1
    return Agreement(
        series=len(theirs),
        missing_series=len(theirs.keys() - ours.keys()),
        extra_series=len(ours.keys() - theirs.keys()),
        points=total,
        differing_points=differing,
        max_relative_difference=worst,
        overlap=overlap,
    )


def compared(vigil: Timings, prometheus: Timings, overlap: bool = False) -> Agreement | None:
    """Vigil's last answer against Prometheus's, when both answered."""
    if vigil.answer is None or prometheus.answer is None:
        return None
    return agreement(vigil.answer, prometheus.answer, overlap)


def run_queries(
    dataset: DataSet, vigil: Engine, prometheus: Engine, repeat: int
) -> list[dict[str, Any]]:
    """Every query over every window on both engines: timings, tiers and agreement."""
    results = []
    for window in windows(dataset):
        for name, expr in QUERIES:
            params = window.params(dataset, expr)
            # Over a span Prometheus holds only part of, its answer is fetched once for
            # the comparison and not timed: it would be timing a different amount of data.
            reference = prometheus.measure(params, repeat if window.prometheus_holds_all else 0)
            cold = vigil.measure(params, repeat, NO_CACHE)
            cached = vigil.measure(params, repeat) if cold.error is None else cold
            plan = vigil.plan(params)
            # The timed answers' own header; the plan's list where a build lacks it.
            tiers = cold.tiers.split(",") if cold.tiers else plan["tiers"]
            overlap = not window.prometheus_holds_all
            agreed = compared(cold, reference, overlap)
            agreed_cached = compared(cached, reference, overlap)
            result: dict[str, Any] = {
                "query": name,
                "expr": expr,
                "window": window.label,
                "step_s": window.step_s,
                "tiers": tiers,
                "tiers_cached": cached.tiers.split(",") if cached.tiers else None,
                "vigil_points": sum(len(v) for v in points(cold.answer).values())
                if cold.answer
                else None,
                "plan": plan,
            }
            for mode, timings in (
                ("vigil_cold", cold),
                ("vigil_cached", cached),
                ("prometheus", reference),
            ):
                result[f"{mode}_p50_ms"] = timings.percentile_ms(50)
                result[f"{mode}_p95_ms"] = timings.percentile_ms(95)
                if timings.error is not None:
                    result[f"{mode}_error"] = timings.error
            result["agreement"] = asdict(agreed) if agreed else None
            result["agreement_cached"] = asdict(agreed_cached) if agreed_cached else None
            result["agrees"] = bool(
                agreed and agreed.exact and agreed_cached and agreed_cached.exact
            )
            result["target_met"] = target_met(window, cold, cached)
            results.append(result)
            print(
                f"{window.label} {name}: vigil cold p50 {result['vigil_cold_p50_ms']} ms, "
                f"cached {result['vigil_cached_p50_ms']} ms, "
                f"prometheus {result['prometheus_p50_ms']} ms, tiers {','.join(tiers)}, "
                f"{result['vigil_points']} points"
                + (f"; vigil error {cold.error}" if cold.error else ""),
                flush=True,
            )
    return results


def target_met(window: Window, cold: Timings, cached: Timings) -> bool | None:
    """Whether the window's p95 targets were met (None: it has none)."""
    if window.cold_target_ms is None and window.cached_target_ms is None:
        return None
    if cold.error is not None or cached.error is not None:
        return False
    met = True
    if window.cold_target_ms is not None:
        met &= (cold.percentile_ms(95) or 0.0) <= window.cold_target_ms
    if window.cached_target_ms is not None:
        met &= (cached.percentile_ms(95) or 0.0) <= window.cached_target_ms
    return met


def table(dataset: DataSet, results: list[dict[str, Any]]) -> str:
    """The figures as a table: one row per (query, window)."""
    targets = {w.label: w for w in windows(dataset)}

    def pair(result: dict[str, Any], mode: str) -> str:
        if f"{mode}_error" in result:
            status: str = result[f"{mode}_error"].split(" ")[0]
            return f"error {status}"
        if result[f"{mode}_p50_ms"] is None:
            return "not timed"
        return f"{result[f'{mode}_p50_ms']:g} / {result[f'{mode}_p95_ms']:g}"

    rows = []
    for result in results:
        cold, reference = result["vigil_cold_p50_ms"], result["prometheus_p50_ms"]
        agreed = Agreement(**result["agreement"]).text() if result["agreement"] else "-"
        if result["agreement_cached"] and result["agreement_cached"] != result["agreement"]:
            agreed += "; cached: " + Agreement(**result["agreement_cached"]).text()
        verdict = {True: "PASS", False: "MISS", None: "-"}[result["target_met"]]
        rows.append(
            [
                result["query"],
                result["window"],
                ",".join(result["tiers"]),
                pair(result, "vigil_cold"),
                pair(result, "vigil_cached"),
                pair(result, "prometheus"),
                f"{cold / reference:.1f}x" if cold and reference else "-",
                agreed,
                f"{verdict} ({targets[result['window']].target_text()})",
            ]
        )
    return tabulate(
        rows,
        headers=[
            "query",
            "window",
            "tiers",
            "vigil cold\np50 / p95 ms",
            "vigil cached\np50 / p95 ms",
            "prometheus\np50 / p95 ms",
            "cold p50 /\nprometheus",
            "agrees with prometheus",
            "target (p95)",
        ],
    )


# ---------------------------------------------------------------------------------------
# Ingestion while querying


def bench_ingest() -> ModuleType:
    """bench/ingest.py as a module (named apart from the `ingest` package it would shadow)."""
    spec = importlib.util.spec_from_file_location("bench_ingest", BENCH_DIR / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class QueryLoop:
    """A client running queries back to back on a thread until stopped."""

    def __init__(self, engine: Engine, requests: list[dict[str, str]]) -> None:
        self._engine, self._requests = engine, requests
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.seconds: list[float] = []
        self.errors = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            for params in self._requests:
                if self._stop.is_set():
                    return
                seconds, response = self._engine.query_range(params, NO_CACHE)
                self.seconds.append(seconds)
                self.errors += response.status_code != 200

    def __enter__(self) -> QueryLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def interference(
    args: argparse.Namespace, settings: Settings, dataset: DataSet, vigil: Engine, work_dir: Path
) -> dict[str, Any]:
    """Committed ingestion samples/s alone, then while the 1 h queries run cold in a loop.

    Each run gets a fresh `vigil_bench` database and bench/ingest.py's whole agent-shape
    pipeline (API, writer, load generator); the queries go to the query API on the
    benchmark data. All of it shares PostgreSQL, Redis and the machine's cores.
    """
    ingest = bench_ingest()
    options = argparse.Namespace(
        duration=args.interference_seconds,
        warmup=args.interference_warmup,
        series=args.ingest_series,
        api_workers=1,
        consumers=2,
        concurrency=8,
        profile=None,
    )
    hour = windows(dataset)[0]
    requests = [hour.params(dataset, expr) for _, expr in QUERIES]
    folders = {label: work_dir / f"ingest-{label}" for label in ("alone", "with-queries")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    alone = ingest.run_shape(
        "agent", options, settings, ingest.fresh_database(settings), folders["alone"]
    )
    print(f"ingestion alone: {alone['samples_per_s']:,} samples/s", flush=True)
    url = ingest.fresh_database(settings)
    with QueryLoop(vigil, requests) as loop:
        busy = ingest.run_shape("agent", options, settings, url, folders["with-queries"])
    print(f"ingestion with queries: {busy['samples_per_s']:,} samples/s", flush=True)
    reduction = 1 - busy["samples_per_s"] / alone["samples_per_s"]
    return {
        "samples_per_s_alone": alone["samples_per_s"],
        "samples_per_s_with_queries": busy["samples_per_s"],
        "reduction": round(reduction, 3),
        "target_met": reduction <= INTERFERENCE_TARGET,
        "queries_run": len(loop.seconds),
        "query_errors": loop.errors,
        "query_p50_ms_during": round(float(np.percentile(loop.seconds, 50)) * 1000, 1)
        if loop.seconds
        else None,
        "runs": {"alone": alone, "with_queries": busy},
    }


def check_prometheus(prometheus: Engine, dataset: DataSet) -> None:
    """Fail unless Prometheus sees every series at the end and every block's samples.

    (Counting every series' samples at once is no PromQL: `count_over_time` drops the
    metric name, and series differing only by it would collide.)
    """
    for expr, expected in (
        ('count({__name__=~".+"})', dataset.series),
        (
            f"sum(count_over_time(cpu_usage[{dataset.hours}h]))",
            dataset.hosts * dataset.samples_per_series,
        ),
    ):
        found = prometheus.instant(expr, dataset.end_s)
        if found != expected:
            raise RuntimeError(
                f"Prometheus answers {found} to {expr}, not {expected}: are the blocks in "
                "var/bench/prometheus-data complete? Run again with --reload"
            )
    print(f"prometheus: sees all {dataset.series:,} series and every block", flush=True)


# ---------------------------------------------------------------------------------------


@contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold `lock` for the block, or exit if another run holds it.

    Two runs at once would share a data set's files and `vigil_bench`, rebuild what the
    other is reading, and each time the other's load.
    """
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            sys.exit(f"bench/query.py: {handle.read().strip()} holds {lock}; wait for it to end")
        handle.truncate(0)
        handle.write(f"run {os.getpid()} since {datetime.now(UTC):%H:%M:%S}Z")
        handle.flush()
        yield


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help with the module docstring as written and every default shown."""


def arguments() -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\nUsage:")[0],
        formatter_class=HelpFormatter,
        epilog="Loads are cached: a rerun with the same data set parameters goes straight to "
        "the queries. Develop with a small data set, e.g. --hosts 5 --hours 2.",
    )
    parser.add_argument("--hosts", type=int, default=100, help="hosts")
    parser.add_argument(
        "--metrics",
        type=int,
        default=100,
        help=f"series per host, at least {MIN_METRICS}",
    )
    parser.add_argument("--hours", type=int, default=24, help="hours of data at 10 s")
    parser.add_argument("--seed", type=int, default=1, help="data set seed")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per query and mode")
    parser.add_argument("--reload", action="store_true", help="drop both loads and load again")
    parser.add_argument(
        "--no-interference", action="store_true", help="skip the ingestion measurement"
    )
    parser.add_argument(
        "--interference-seconds",
        type=float,
        default=30,
        help="measured ingestion window per run",
    )
    parser.add_argument(
        "--interference-warmup",
        type=float,
        default=10,
        help="ingestion warm-up per run",
    )
    parser.add_argument(
        "--ingest-series",
        type=int,
        default=100_000,
        help="series the ingestion load sends",
    )
    args = parser.parse_args()
    if args.metrics < MIN_METRICS:
        parser.error(f"--metrics must be at least {MIN_METRICS}")
    if min(args.hosts, args.hours, args.repeat) < 1:
        parser.error("--hosts, --hours and --repeat must be positive")
    return args


def run(args: argparse.Namespace, settings: Settings, work_dir: Path) -> None:
    """Load (or reuse) the data set, time the queries, measure ingestion, print it all."""
    for service in local_services(settings):
        service.up()
    prometheus_data = settings.data_dir / "bench" / "prometheus-data"
    dataset = DataSet(hosts=args.hosts, metrics=args.metrics, hours=args.hours, seed=args.seed)
    print(
        f"data set {dataset.digest()}: {dataset.hosts} hosts x {dataset.metrics} series x "
        f"{dataset.samples_per_series:,} samples = {dataset.samples:,} samples, "
        f"ending {datetime.fromtimestamp(dataset.end_s, UTC):%Y-%m-%d %H:%M}Z",
        flush=True,
    )
    if args.reload:
        shutil.rmtree(prometheus_data, ignore_errors=True)
    url = bench_database(settings, args.reload)
    data, vigil_load = load_vigil(dataset, url, work_dir / "api-keys.json")
    rollups = build_rollups(dataset, data)
    print(f"results cache: dropped {clear_cached_results(settings, data)} keys", flush=True)
    prometheus_load = load_prometheus(dataset, prometheus_data / dataset.digest(), work_dir)

    # Other work on the 2-core machine moves these figures by 2x: say how busy it was.
    load_before = os.getloadavg()
    print(f"load average {load_before[0]:.2f} (1 min), {load_before[1]:.2f} (5 min)", flush=True)
    prometheus_port, vigil_port = free_port(), free_port()
    retention = retention_env(dataset, int(time.time()))
    print(
        "vigil api: retention "
        + ", ".join(f"{k.rsplit('__', 1)[1].lower()} {v}" for k, v in retention.items()),
        flush=True,
    )
    with (
        running(
            prometheus_command(prometheus_data / dataset.digest(), work_dir, prometheus_port),
            {},
            f"http://127.0.0.1:{prometheus_port}/-/ready",
            work_dir / "prometheus.log",
        ),
        running(
            [sys.executable, "-m", "vigil", "api", "--port", str(vigil_port), "--workers", "1"],
            {"VIGIL_DATABASE_URL": data.database_url, **retention},
            f"http://127.0.0.1:{vigil_port}/healthz",
            work_dir / "vigil-api.log",
        ),
    ):
        prometheus = Engine("prometheus", f"http://127.0.0.1:{prometheus_port}")
        vigil = Engine(
            "vigil", f"http://127.0.0.1:{vigil_port}", {"Authorization": f"Bearer {data.api_key}"}
        )
        check_prometheus(prometheus, dataset)
        results = run_queries(dataset, vigil, prometheus, args.repeat)
        print()
        print(table(dataset, results))
        print(
            f"({ROLLUP_DAYS}d: Prometheus holds only the raw {dataset.hours} h, so it is not "
            "timed there and answers are compared only at the steps it answers.)"
        )
        print()
        interfered = None
        if not args.no_interference:
            interfered = interference(args, settings, dataset, vigil, work_dir)
            print(
                f"ingestion: {interfered['samples_per_s_alone']:,} samples/s alone, "
                f"{interfered['samples_per_s_with_queries']:,} while querying "
                f"({interfered['queries_run']} queries, {interfered['query_errors']} failed): "
                f"{interfered['reduction']:.1%} lower "
                f"(target <= {INTERFERENCE_TARGET:.0%}: "
                f"{'met' if interfered['target_met'] else 'NOT met'})"
            )
        vigil.close()
        prometheus.close()

    judged = [r for r in results if r["target_met"] is not None]
    print(
        json.dumps(
            {
                "dataset": {
                    "digest": dataset.digest(),
                    **asdict(dataset),
                    "samples": dataset.samples,
                },
                "load": {"vigil": vigil_load, "prometheus": prometheus_load, "rollups": rollups},
                "queries": results,
                "all_agree": all(r["agrees"] for r in results),
                "all_raw_answers_agree": all(r["agrees"] for r in results if r["tiers"] == ["raw"]),
                "targets_met": {
                    window.label: all(
                        r["target_met"] for r in judged if r["window"] == window.label
                    )
                    for window in windows(dataset)
                },
                "interference": interfered,
                "load_average_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
            }
        )
    )


def main() -> None:
    args = arguments()
    settings = Settings()
    work_dir = settings.data_dir / "bench" / "query"
    work_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(work_dir / "lock"):
        run(args, settings, work_dir)


if __name__ == "__main__":
    main()
