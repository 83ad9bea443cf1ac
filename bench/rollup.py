"""Rollup job timings: materialise and repair on 10k series at 10 s, and the repair of a
30-minute backfill of 100k series.

The data: bench/query.py's generator (`--hosts` x `--metrics` series: gauges, counters
with resets, a latency histogram), the last `--hours` before 2026-01-01T00:00Z, loaded
through the storage layer into a database of its own, `vigil_bench_rollup`, recreated
on every run (the repair runs write late samples into it; the query benchmark's data
in `vigil_bench_query` is never touched). The day's other hours of 1h rollups are
synthesised (bench/query.py's `synthesise_hours`), so the 1d bucket a repair rewrites
reads a whole day of 1h rows, as it would in production.

Timed, each `--repeat` times (median and p95; the 60-minute build `--hour-repeat`
times), with what is rebuilt deleted and the table vacuumed before each run:

- **1m, one minute**: `materialise(conn, '1m', ...)` with the watermark one minute
  behind, successive minutes of the first hour (10k rows from 60k samples);
- **1m, 60 minutes**: the same over an hour (`max_buckets=60`, one run);
- **1h, one hour**: `materialise(conn, '1h', ...)` of one bucket from 60 1m buckets;
- **repair, one dirty minute**: late samples written by `SampleWriter` (so the
  invalidation log is filled by the real writer path, in its transaction) into one
  already rolled-up minute, for every series or for one metric (cpu_usage, one
  series per host), then `repair_and_invalidate` with a real `ResultsCache` on the
  dev Redis holding the six benchmark queries' blocks over the data (under a prefix
  of its own); 1m, 1h and 1d are built past the minute, so all three are repaired.
  The all-series repair runs again without a cache: the database's share of it.
- **repair of a backfill** (`--backfill-hosts` x `--metrics` series, 100k by default, in
  a tenant of its own): the hour before the raw span, its first half written on time
  and rolled up (the day's other 23 hours of 1h copied from that hour, so the 1d repair
  reads a whole day of 1h rows), then the second half (`--backfill-minutes`, 30 x 100k
  series = 18 M samples) written late through `SampleWriter`, ten hosts per
  transaction (timed: the storage layer's ingest rate in the same run), then
  `repair_and_invalidate` with the real `ResultsCache`, batch after batch of
  `rollup.repair_batch` dirty rows as the `rollup_repair` job runs them, until the log is
  empty (timed: repaired samples per second). Its ceiling: the plain `INSERT ... SELECT`
  below of 1m from those raw samples, 1h from that hour's 1m rows and 1d from that day's
  1h rows of the same series, run after it. Target: at least the end-to-end ingest rate
  bench/ingest.py measured (`INGEST_SAMPLES_PER_S`), so a repair keeps up with a backfill.

Beside each materialise figure, the ceiling: a plain `INSERT ... SELECT` of the same
aggregates (count, sum, min, max, first/last with times) without the counter-reset
and NaN logic, into a hypertable shaped like the tier, over the same window in the
same run (alternating which runs first). Targets: one minute <= 1 s, one hour of 1h
<= 10 s, repair of one dirty minute <= 1 s (p95). A missed target prints the
statement's `EXPLAIN (ANALYZE, BUFFERS)`; `--explain` prints it for every job.

The last stdout line is one JSON object.

Usage: python bench/rollup.py [--hosts 100] [--metrics 100] [--hours 3] [--repeat 7]
                              [--hour-repeat 3] [--backfill-hosts 1000]
                              [--backfill-minutes 30] [--explain]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import psycopg
import redis
from psycopg import sql
from tabulate import tabulate

from querylang.parser import parse
from querylang.result import QueryResult
from querylang.results_cache import ResultsCache
from storage import tenants
from storage.database import connect
from storage.queries import query
from storage.repair import repair_and_invalidate
from storage.rollups import dirty_count, materialise, materialise_window, read_watermarks
from storage.samples import SampleBatch, SampleWriter, SeriesColumns
from storage.series import SeriesCatalog
from storage.tiers import ROLLUP_TIERS, TIERS
from vigil.services import local_services
from vigil.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
ROLLUP_DATABASE = "vigil_bench_rollup"
US = 1_000_000
MINUTE_US = 60 * US
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
SETTLE_US = 30 * US
TARGETS_S = {
    "1m_minute": 1.0,
    "1m_60_minutes": 10.0,
    "1h_hour": 10.0,
    "repair_all_series": 1.0,
    "repair_one_metric": 1.0,
}
"""p95 targets in seconds: one hour <= 10 s is judged both for the 1h bucket from its 60
1m buckets and for building those 60 minutes of 1m (the database-only repair is a
breakdown, not judged)."""
CACHE_PREFIX = "vigil:bench-rollup:qc"
INGEST_SAMPLES_PER_S = 138_737
"""End-to-end ingest rate (API, bus, writer, PostgreSQL on this machine) that bench/ingest.py
measured for 10k-sample remote-write requests (issue 3's closing note; agent-sized
batches: 93,861/s), the rate a backfill arrives at: the backfill repair's target."""


def bench_query() -> ModuleType:
    """bench/query.py as a module: its data set, loader and rollup synthesis."""
    spec = importlib.util.spec_from_file_location("bench_query", BENCH_DIR / "query.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass
class Job:
    """Timings of one job, and of its plain INSERT ... SELECT ceiling when it has one."""

    name: str
    seconds: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    plain_seconds: list[float] = field(default_factory=list)
    plain_rows: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "runs": len(self.seconds)}
        out.update(_figures(self.seconds, self.rows))
        if self.plain_seconds:
            plain = _figures(self.plain_seconds, self.plain_rows)
            out.update({f"plain_{k}": v for k, v in plain.items()})
            out["vs_plain"] = round(out["median_s"] / plain["median_s"], 2)
        target = TARGETS_S.get(self.name)
        if target is not None:
            out["target_s"] = target
            out["target_met"] = out["p95_s"] <= target
        return {**out, **self.extra}


def _figures(seconds: list[float], rows: list[int]) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {
        "median_s": round(median, 3),
        "p95_s": round(float(np.percentile(seconds, 95)), 3),
        "rows": rows[0] if len(set(rows)) == 1 else rows,
        "rows_per_s": round(statistics.median(rows) / median) if median else None,
    }


# ---------------------------------------------------------------------------------------
# The ceiling: the same aggregates, plainly

PLAIN_TABLE = sql.Identifier("bench", "plain_rollup")

# Count, sum, min, max, first and last with their times, per series and bucket: what
# rollup_from_raw computes minus the lag() window (counter resets) and the NaN and
# stale-marker filters. reset_correction and increase are written as 0.
PLAIN_FROM_RAW = """
INSERT INTO bench.plain_rollup
SELECT time_bucket(%(width)s, time - interval '1 microsecond') + %(width)s AS bucket,
       series_id, count(*)::integer, sum(value), min(value), max(value),
       min(time), first(value, time), max(time), last(value, time), 0, 0
FROM vigil.samples_raw
WHERE time > %(low)s AND time <= %(high)s
GROUP BY 1, 2
"""

PLAIN_FROM_TIER = """
INSERT INTO bench.plain_rollup
SELECT time_bucket(%(width)s, bucket - interval '1 microsecond') + %(width)s AS bucket,
       series_id, sum(samples)::integer, sum(sum), min(min), max(max),
       min(first_time), first(first_value, first_time), max(last_time),
       last(last_value, last_time), 0, 0
FROM {source}
WHERE bucket > %(low)s AND bucket <= %(high)s AND series_id >= %(first_series)s
GROUP BY 1, 2
"""
"""From the tier `{source}` (vigil.rollup_1m, vigil.rollup_1h), series from `first_series`."""


def create_plain_table(conn: psycopg.Connection) -> None:
    """A hypertable shaped like vigil.rollup_1m (same columns, primary key, chunking)."""
    conn.execute(
        """
        CREATE TABLE bench.plain_rollup (LIKE vigil.rollup_1m INCLUDING ALL);
        SELECT create_hypertable('bench.plain_rollup', by_range('bucket', interval '1 day'),
                                 create_default_indexes => false);
        """
    )


def plain(
    conn: psycopg.Connection,
    statement: str,
    width_us: int,
    low_us: int,
    high_us: int,
    source: str = "rollup_1m",
    first_series: int = 0,
) -> int:
    """The ceiling statement over buckets ending in (low, high] (from the tier table
    `source`, series ids from `first_series`, when it reads a tier); the rows it wrote."""
    composed = sql.SQL(statement).format(source=sql.Identifier("vigil", source))
    params = {
        "width": _interval(width_us),
        "low": _at(low_us),
        "high": _at(high_us),
        "first_series": first_series,
    }
    return conn.execute(composed, params).rowcount


# ---------------------------------------------------------------------------------------
# Resetting between runs


def set_watermark(conn: psycopg.Connection, tier: str, to_us: int) -> None:
    """Put a tier's claimed and materialised watermarks at `to_us`."""
    conn.execute(
        "UPDATE vigil.rollup_watermark SET claimed_to = %(to)s, materialised_to = %(to)s "
        "WHERE tier = %(tier)s",
        {"tier": tier, "to": _at(to_us)},
    )


def clear(conn: psycopg.Connection, table: sql.Composable, low_us: int, high_us: int) -> None:
    """Delete buckets ending in (low, high] and vacuum, so the next run inserts as a
    first run would (into reusable space, with a visibility map)."""
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE bucket > %s AND bucket <= %s").format(table),
        (_at(low_us), _at(high_us)),
    )
    conn.execute(sql.SQL("VACUUM {}").format(table))


def tier_table(tier: str) -> sql.Composable:
    return sql.Identifier("vigil", TIERS[tier].table)


def timed(run: Callable[[], int]) -> tuple[float, int]:
    began = time.perf_counter()
    rows = run()
    return time.perf_counter() - began, rows


# ---------------------------------------------------------------------------------------
# The jobs


def engine(conn: psycopg.Connection, tier: str, now_us: int, max_buckets: int) -> int:
    """The rollup job as the scheduler runs it: `materialise`; the rows it wrote."""
    return materialise(conn, tier, now_us, SETTLE_US, max_buckets).rows


def paired(job: Job, run: int, ours: Callable[[], int], ceiling: Callable[[], int]) -> None:
    """One timed run of the engine and one of its ceiling, alternating which goes
    first, so neither always finds the other's pages in cache."""
    pairs = [(ours, job.seconds, job.rows), (ceiling, job.plain_seconds, job.plain_rows)]
    if run % 2 == 0:
        pairs.reverse()
    for call, seconds, rows in pairs:
        took, wrote = timed(call)
        seconds.append(took)
        rows.append(wrote)


def minute_job(conn: psycopg.Connection, start_us: int, repeat: int) -> Job:
    """materialise() of one 1m bucket at a time, successive minutes, beside the ceiling."""
    job = Job("1m_minute")
    set_watermark(conn, "1m", start_us)
    for run in range(repeat):
        low, high = start_us + run * MINUTE_US, start_us + (run + 1) * MINUTE_US
        paired(
            job,
            run,
            partial(engine, conn, "1m", high + SETTLE_US, 1),
            partial(plain, conn, PLAIN_FROM_RAW, MINUTE_US, low, high),
        )
        print(f"1m one minute #{run + 1}: {job.seconds[-1]:.3f} s", flush=True)
    return job


def hour_of_minutes_job(conn: psycopg.Connection, low_us: int, repeat: int) -> Job:
    """materialise() of 60 1m buckets in one run, beside the ceiling."""
    job = Job("1m_60_minutes")
    high = low_us + HOUR_US
    for run in range(repeat):
        clear(conn, tier_table("1m"), low_us, high)
        clear(conn, PLAIN_TABLE, low_us, high)
        set_watermark(conn, "1m", low_us)
        paired(
            job,
            run,
            partial(engine, conn, "1m", high + SETTLE_US, 60),
            partial(plain, conn, PLAIN_FROM_RAW, MINUTE_US, low_us, high),
        )
        print(f"1m 60 minutes #{run + 1}: {job.seconds[-1]:.2f} s", flush=True)
    return job


def hour_job(conn: psycopg.Connection, low_us: int, repeat: int) -> Job:
    """materialise() of one 1h bucket from its 60 1m buckets, beside the ceiling."""
    job = Job("1h_hour")
    high = low_us + HOUR_US
    for run in range(repeat):
        clear(conn, tier_table("1h"), low_us, high)
        clear(conn, PLAIN_TABLE, low_us, high)
        set_watermark(conn, "1h", low_us)
        paired(
            job,
            run,
            partial(engine, conn, "1h", high, 1),
            partial(plain, conn, PLAIN_FROM_TIER, HOUR_US, low_us, high),
        )
        print(f"1h one hour #{run + 1}: {job.seconds[-1]:.2f} s", flush=True)
    return job


BENCH_QUERIES_STEPS_S = (15, 60)


def fill_cache(
    cache: ResultsCache, tenant_id: str, queries: list[str], low_us: int, high_us: int
) -> None:
    """Cache the benchmark queries' blocks over (low, high] at 15 s and 60 s, as a
    dashboard would have; the answers are empty (only keys and index entries matter)."""
    now_us = time.time_ns() // 1000

    def compute(start_us: int, end_us: int) -> QueryResult:
        return QueryResult("matrix", [])

    for text in queries:
        expr = parse(text)
        for step_s in BENCH_QUERIES_STEPS_S:
            cache.range_query(
                tenant_id, expr, low_us, high_us, step_s * US, now_us, compute, 5 * MINUTE_US
            )


def cached_blocks(cache_redis: Any) -> int:
    """Cached result blocks under the benchmark's prefix (index keys left out)."""
    return sum(
        1
        for key in cache_redis.scan_iter(match=f"{CACHE_PREFIX}:*", count=1000)
        if b":idx:" not in key
    )


@dataclass
class RepairVariant:
    """One way of dirtying a minute: which series get a late sample, whether the repair
    invalidates a cache, and the minutes (by end) it dirties, one per run."""

    job: Job
    batch_of: Callable[[int, int], SampleBatch]
    cache: ResultsCache | None
    minutes: list[int]
    writes: list[float] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)


def repair_once(
    conn: psycopg.Connection,
    writer: SampleWriter,
    variant: RepairVariant,
    run: int,
    cache_redis: Any,
    fill: Callable[[ResultsCache], None],
) -> None:
    """Late samples into an already rolled-up minute through SampleWriter (which logs the
    dirty buckets in its transaction), then a timed repair_and_invalidate (without a
    cache: the database's part alone)."""
    job = variant.job
    if variant.cache is not None:
        fill(variant.cache)
    before = cached_blocks(cache_redis)
    batch = variant.batch_of(run, variant.minutes[run])
    began = time.perf_counter()
    writer.write(conn, batch)
    variant.writes.append(time.perf_counter() - began)
    dirty = int(conn.execute(query("count_dirty")).fetchone()[0])  # type: ignore[index]
    began = time.perf_counter()
    done = repair_and_invalidate(conn, variant.cache, limit=10_000)
    job.seconds.append(time.perf_counter() - began)
    job.rows.append(done.rows)
    variant.dropped.append(before - cached_blocks(cache_redis))
    job.extra = {
        "late_write_median_s": round(statistics.median(variant.writes), 3),
        "dirty_log_rows": dirty,
        "invalidations": len(done.invalidations),
        "cached_blocks_dropped_median": statistics.median(variant.dropped),
    }
    print(
        f"{job.name} #{run + 1}: write {variant.writes[-1]:.3f} s, repair "
        f"{job.seconds[-1]:.3f} s ({len(done.buckets)} dirty buckets, {done.rows:,} rows, "
        f"{variant.dropped[-1]} cached blocks dropped)",
        flush=True,
    )


# ---------------------------------------------------------------------------------------
# Where the time goes


def tier_statement(tier: str, statement: str, rows: str) -> sql.Composed:
    """`statement` (upsert_buckets, insert_buckets) around a tier's aggregate of the named
    row source, composed as storage/rollups.py's _statement composes it (that function
    is private; this copy must follow it)."""
    spec = ROLLUP_TIERS[tier]
    assert spec.source is not None
    source = sql.Identifier("vigil", TIERS[spec.source].view)
    aggregate = sql.SQL(query("rollup_from_raw" if spec.source == "raw" else "rollup_from_tier"))
    return sql.SQL(query(statement)).format(
        target=sql.Identifier("vigil", spec.table),
        aggregate=aggregate.format(rows=sql.SQL(query(rows)).format(source=source)),
    )


def explain(conn: psycopg.Connection, tier: str, low_us: int, high_us: int) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of materialise_window's upsert for (low, high] as a
    first run (the buckets deleted first), rolled back."""
    spec = ROLLUP_TIERS[tier]
    rows = "raw_rows_window" if spec.source == "raw" else "tier_rows_window"
    params = {"width": _interval(spec.width_us), "low": _at(low_us), "high": _at(high_us)}
    delete = sql.SQL("DELETE FROM {} WHERE bucket > %(low)s AND bucket <= %(high)s").format(
        tier_table(tier)
    )
    return "\n".join(
        _explained(
            conn,
            [(delete, params, False), (tier_statement(tier, "upsert_buckets", rows), params, True)],
        )
    )


def explain_repair(
    conn: psycopg.Connection, tenant_id: Any, metrics: list[str], low_us: int, high_us: int
) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of what `repair` runs for the 1m buckets ending in (low,
    high] of the tenant's `metrics`: per tier, built as far as its watermark, the delete
    and the insert of its ranges, in one transaction rolled back, with each statement's
    execution time first."""
    marks = read_watermarks(conn)
    names: list[str] = []
    statements: list[tuple[sql.Composed, dict[str, Any], bool]] = []
    for tier, spec in ROLLUP_TIERS.items():
        built = marks[tier].materialised_to_us
        low, high = spec.floor(low_us), min(spec.bucket_end(high_us), spec.floor(built or 0))
        if high <= low:
            break
        params = {
            "tenant_ids": [tenant_id] * len(metrics),
            "metrics": metrics,
            "lows": [_at(low)] * len(metrics),
            "highs": [_at(high)] * len(metrics),
            "width": _interval(spec.width_us),
            "low": _at(low),
            "high": _at(high),
        }
        rows = "raw_rows_ranges" if spec.source == "raw" else "tier_rows_ranges"
        delete = sql.SQL(query("delete_ranges")).format(target=tier_table(tier))
        statements += [
            (delete, params, True),
            (tier_statement(tier, "insert_buckets", rows), params, True),
        ]
        span = f"{len(metrics)} metrics, ({_at(low):%d %H:%M}, {_at(high):%d %H:%M}]"
        names += [f"{tier} delete ({span})", f"{tier} insert ({span})"]
    plans = _explained(conn, statements)
    return "\n".join(
        f"-- {name}: {plan.rsplit('Execution Time: ', 1)[-1]}\n{plan}"
        for name, plan in zip(names, plans, strict=True)
    )


def _explained(
    conn: psycopg.Connection, statements: list[tuple[sql.Composed, dict[str, Any], bool]]
) -> list[str]:
    """Run the statements in one transaction, rolled back; the plans of those marked to
    be explained (EXPLAIN (ANALYZE, BUFFERS)), in order."""
    plans: list[str] = []
    try:
        with conn.transaction():
            for statement, params, explained in statements:
                if not explained:
                    conn.execute(statement, params)
                    continue
                analyse = sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + statement
                plans.append("\n".join(line for (line,) in conn.execute(analyse, params)))
            raise _Rollback
    except _Rollback:
        pass
    return plans


class _Rollback(Exception):
    """Leaves an EXPLAIN ANALYZE's transaction without its writes."""


# ---------------------------------------------------------------------------------------


def _at(us: int) -> datetime:
    return datetime.fromtimestamp(us / US, UTC)


def _interval(us: int) -> timedelta:
    return timedelta(microseconds=us)


def late_batch_factory(
    q: ModuleType, dataset: Any, tenant_id: Any, hosts_positions: list[int] | None, label: str
) -> Callable[[int, int], SampleBatch]:
    """Batches of one late sample per chosen series, 5 s before a minute's end, with the
    value of the sample before it (so no counter reset is introduced). `hosts_positions`
    picks series by position in each host's list (None: every series)."""
    keys = [
        key
        for host in range(dataset.hosts)
        for position, key in enumerate(dataset.host_keys(host))
        if hosts_positions is None or position in hosts_positions
    ]
    fingerprints = [key.fingerprint() for key in keys]

    def batch_of(run: int, minute_end_us: int) -> SampleBatch:
        at_s = minute_end_us // US - 10
        values = np.concatenate(
            [
                q.DataSet.host_block(dataset, host, np.array([at_s], np.int64)).values()[
                    hosts_positions if hosts_positions is not None else slice(None), 0
                ]
                for host in range(dataset.hosts)
            ]
        )
        columns = SeriesColumns(
            fingerprints=fingerprints,
            key_of=keys.__getitem__,
            counts=np.ones(len(keys), np.int64),
            times_us=np.full(len(keys), minute_end_us - 5 * US, np.int64),
            values=values,
        )
        return SampleBatch(f"late-{label}-{run}", tenant_id, columns)

    return batch_of


# ---------------------------------------------------------------------------------------
# The backfill: the last minutes of an hour of many series, written late


@dataclass(frozen=True)
class Backfill:
    """A tenant of its own whose series hold the hour ending `high_us`: the minutes
    before its last `minutes` written on time and rolled up, the last ones written late."""

    dataset: Any  # bench/query.py's DataSet
    tenant_id: Any
    high_us: int
    minutes: int
    first_series: int  # its series ids are this one and above

    @property
    def late_low_us(self) -> int:
        return self.high_us - self.minutes * MINUTE_US

    @property
    def day(self) -> tuple[int, int]:
        """The 1d bucket (low, high] holding the hour."""
        high = ROLLUP_TIERS["1d"].bucket_end(self.high_us)
        return high - ROLLUP_TIERS["1d"].width_us, high


def write_backfill(
    conn: psycopg.Connection,
    writer: SampleWriter,
    dataset: Any,
    tenant_id: Any,
    low_us: int,
    high_us: int,
    tag: str,
) -> tuple[int, float]:
    """Every series' samples at 10 s in (low, high] through the writer, ten hosts (one
    batch each) per transaction; the samples written and the seconds it took."""
    times_s = np.arange(low_us // US + 10, high_us // US + 1, 10, dtype=np.int64)
    written, took = 0, 0.0
    for first in range(0, dataset.hosts, 10):
        batches = []
        for host in range(first, min(first + 10, dataset.hosts)):
            block = dataset.host_block(host, times_s)
            keys = block.keys
            columns = SeriesColumns(
                fingerprints=[key.fingerprint() for key in keys],
                key_of=keys.__getitem__,
                counts=np.full(len(keys), len(times_s), np.int64),
                times_us=np.tile(times_s * US, len(keys)),
                values=block.values().ravel(),
            )
            batches.append(SampleBatch(f"{tag}-{host:05d}", tenant_id, columns))
        began = time.perf_counter()  # the generator's time left out
        written += sum(result.samples for result in writer.write_many(conn, batches))
        took += time.perf_counter() - began
    return written, took


def backfill_on_time(
    conn: psycopg.Connection, q: ModuleType, hosts: int, metrics: int, high_us: int, minutes: int
) -> Backfill:
    """The backfill tenant and the part of its hour written on time (before any rollup
    has run, so nothing of it is late)."""
    dataset = q.DataSet(hosts=hosts, metrics=metrics, hours=1)
    tenant = tenants.create_tenant(conn, "backfill").tenant
    low = high_us - HOUR_US
    written, took = write_backfill(
        conn,
        SampleWriter(SeriesCatalog()),
        dataset,
        tenant.id,
        low,
        high_us - minutes * MINUTE_US,
        "on-time",
    )
    conn.execute("ANALYZE vigil.series")
    row = conn.execute("SELECT min(id) FROM vigil.series WHERE tenant_id = %s", (tenant.id,))
    first_series = row.fetchone()[0]  # type: ignore[index]
    print(
        f"backfill: {dataset.series:,} series, {written:,} samples on time in {took:.1f} s "
        f"({written / took:,.0f}/s)",
        flush=True,
    )
    return Backfill(dataset, tenant.id, high_us, minutes, first_series)


def backfill_tiers(conn: psycopg.Connection, backfill: Backfill) -> None:
    """1m and 1h of the on-time part of the backfill hour, and the day's other hours of 1h
    for its series: copies of that hour's rows (only how many rows the 1d repair reads
    matters, and that it equals a rebuild)."""
    low = backfill.high_us - HOUR_US
    if backfill.late_low_us > low:
        materialise_window(conn, "1m", low, backfill.late_low_us)
    materialise_window(conn, "1h", low, backfill.high_us)
    day_low, day_high = backfill.day
    conn.execute(
        """
        INSERT INTO vigil.rollup_1h
        SELECT r.bucket + k * interval '1 hour', r.series_id, r.samples, r.sum, r.min, r.max,
               r.first_time + k * interval '1 hour', r.first_value,
               r.last_time + k * interval '1 hour', r.last_value, r.reset_correction, r.increase
        FROM vigil.rollup_1h AS r, generate_series(%(first)s::integer, %(last)s::integer) AS k
        WHERE r.bucket = %(hour)s AND r.series_id >= %(first_series)s AND k <> 0
        """,
        {
            "first": (day_low - backfill.high_us) // HOUR_US + 1,
            "last": (day_high - backfill.high_us) // HOUR_US,
            "hour": _at(backfill.high_us),
            "first_series": backfill.first_series,
        },
    )


def backfill_job(
    conn: psycopg.Connection,
    backfill: Backfill,
    cache: ResultsCache,
    fill: Callable[[ResultsCache], None],
    batch: int,
) -> Job:
    """The late minutes written through the writer (timed), repaired batch after batch
    until the log is empty (timed), then the plain INSERT ... SELECT ceiling of the same
    tiers (timed), and the repaired rows checked."""
    job = Job("repair_backfill")
    fill(cache)
    written, write_s = write_backfill(
        conn,
        SampleWriter(SeriesCatalog()),
        backfill.dataset,
        backfill.tenant_id,
        backfill.late_low_us,
        backfill.high_us,
        "late",
    )
    print(
        f"backfill: {written:,} samples written late in {write_s:.1f} s "
        f"({written / write_s:,.0f}/s)",
        flush=True,
    )
    dirty = dirty_count(conn)
    batches = rows = buckets = invalidations = 0
    began = time.perf_counter()
    while True:
        done = repair_and_invalidate(conn, cache, batch)
        if not done.buckets:
            break
        batches += 1
        rows += done.rows
        buckets += len(done.buckets)
        invalidations += len(done.invalidations)
        print(
            f"backfill repair batch {batches}: {len(done.buckets)} dirty buckets, "
            f"{done.rows:,} rows, {time.perf_counter() - began:.1f} s so far",
            flush=True,
        )
    repair_s = time.perf_counter() - began
    if buckets != dirty or dirty_count(conn):
        raise RuntimeError(f"{buckets} dirty buckets repaired of {dirty}; {dirty_count(conn)} left")

    day_low, day_high = backfill.day
    ceiling = [
        partial(plain, conn, PLAIN_FROM_RAW, MINUTE_US, backfill.late_low_us, backfill.high_us),
        partial(
            plain,
            conn,
            PLAIN_FROM_TIER,
            HOUR_US,
            backfill.high_us - HOUR_US,
            backfill.high_us,
            "rollup_1m",
            backfill.first_series,
        ),
        partial(
            plain,
            conn,
            PLAIN_FROM_TIER,
            DAY_US,
            day_low,
            day_high,
            "rollup_1h",
            backfill.first_series,
        ),
    ]
    plain_s, plain_rows = 0.0, 0
    for step in ceiling:  # one table for the three tiers, so emptied before each
        conn.execute("TRUNCATE bench.plain_rollup")
        took, wrote = timed(step)
        plain_s += took
        plain_rows += wrote
    check_backfill(conn, backfill)

    job.seconds.append(repair_s)
    job.rows.append(rows)
    job.plain_seconds.append(plain_s)
    job.plain_rows.append(plain_rows)
    samples_per_s = round(written / repair_s)
    job.extra = {
        "samples": written,
        "samples_per_s": samples_per_s,
        "plain_samples_per_s": round(written / plain_s),
        "late_write_s": round(write_s, 1),
        "late_write_samples_per_s": round(written / write_s),
        "ingest_samples_per_s": INGEST_SAMPLES_PER_S,
        "repair_batch": batch,
        "batches": batches,
        "dirty_log_rows": dirty,
        "invalidations": invalidations,
        "target_samples_per_s": INGEST_SAMPLES_PER_S,
        "target_met": samples_per_s >= INGEST_SAMPLES_PER_S,
    }
    print(
        f"backfill repair: {written:,} samples in {repair_s:.1f} s ({samples_per_s:,}/s, "
        f"{batches} batches of {batch}); plain INSERT ... SELECT {plain_s:.1f} s "
        f"({round(written / plain_s):,}/s)",
        flush=True,
    )
    return job


def check_backfill(conn: psycopg.Connection, backfill: Backfill) -> None:
    """Fail unless every series of the backfill has its late minutes in 1m (6 samples
    each), its whole hour in 1h (360) and its day in 1d (that hour and 23 copies of its
    on-time part)."""
    series = backfill.dataset.series
    day_high = backfill.day[1]
    day_samples = 360 + 23 * (60 - backfill.minutes) * 6
    found = conn.execute(
        """
        SELECT (SELECT count(*) FILTER (WHERE samples = 6) FROM vigil.rollup_1m
                WHERE bucket > %(late_low)s AND bucket <= %(high)s
                  AND series_id >= %(first_series)s),
               (SELECT count(*) FILTER (WHERE samples = 360) FROM vigil.rollup_1h
                WHERE bucket = %(high)s AND series_id >= %(first_series)s),
               (SELECT count(*) FILTER (WHERE samples = %(day_samples)s) FROM vigil.rollup_1d
                WHERE bucket = %(day_high)s AND series_id >= %(first_series)s)
        """,
        {
            "late_low": _at(backfill.late_low_us),
            "high": _at(backfill.high_us),
            "day_high": _at(day_high),
            "day_samples": day_samples,
            "first_series": backfill.first_series,
        },
    ).fetchone()
    expected = (series * backfill.minutes, series, series)
    if tuple(found or ()) != expected:
        raise RuntimeError(f"backfill rows 1m/1h/1d: {found}, expected {expected}")
    print(
        f"backfill verified: 1m, 1h and 1d rows of every series complete ({expected})", flush=True
    )


def run(args: argparse.Namespace, settings: Settings, work_dir: Path) -> dict[str, Any]:
    """Load a fresh data set, time every job, print the figures; the JSON summary."""
    for service in local_services(settings):
        service.up()
    q = bench_query()
    dataset = q.DataSet(hosts=args.hosts, metrics=args.metrics, hours=args.hours)
    print(
        f"{dataset.series:,} series x {dataset.hours} h at 10 s = {dataset.samples:,} samples "
        f"into {ROLLUP_DATABASE} (recreated)",
        flush=True,
    )
    load_before = os.getloadavg()[0]
    print(f"load average {load_before:.2f} (1 min)", flush=True)
    url = q.bench_database(settings, True, ROLLUP_DATABASE)
    data, load = q.load_vigil(dataset, url, work_dir / "api-keys.json")
    end = dataset.end_s * US
    start = end - dataset.hours * HOUR_US
    hour1, hour2 = start, start + HOUR_US
    jobs: list[Job] = []
    plans: dict[str, str] = {}
    with connect(url) as conn:
        tenant_id = conn.execute(
            "SELECT id FROM vigil.tenant WHERE name = %s", (data.tenant,)
        ).fetchone()[0]  # type: ignore[index]
        create_plain_table(conn)
        # The hour before the raw span, in the same day: no other tenant has raw samples
        # or 1m rows there.
        backfill = (
            backfill_on_time(
                conn, q, args.backfill_hosts, args.metrics, start - HOUR_US, args.backfill_minutes
            )
            if args.backfill_hosts
            else None
        )

        jobs.append(minute_job(conn, hour1, args.repeat))
        jobs.append(hour_of_minutes_job(conn, hour2, args.hour_repeat))
        # The rest of the tiers, untimed: 1m after hour 2 (the watermark is there) and
        # the minutes of hour 1 the minute job left; 1h of every hour (the day's other
        # hours synthesised), the day's 1d bucket.
        began = time.perf_counter()
        materialise(conn, "1m", end + SETTLE_US, SETTLE_US, 24 * 60)
        materialise_window(conn, "1m", hour1 + args.repeat * MINUTE_US, hour2)
        conn.execute("VACUUM (ANALYZE) vigil.rollup_1m")
        print(f"1m tier completed in {time.perf_counter() - began:.1f} s (untimed)", flush=True)

        jobs.append(hour_job(conn, hour2, args.repeat))
        began = time.perf_counter()
        materialise_window(conn, "1h", start, end)
        ids = q.series_ids(conn, data.tenant)
        q.synthesise_hours(conn, dataset, ids, dataset.end_s - q.DAY_S, start // US)
        if backfill is not None:
            backfill_tiers(conn, backfill)
        set_watermark(conn, "1h", end)
        materialise_window(conn, "1d", end - q.DAY_S * US, end)
        set_watermark(conn, "1d", end)
        conn.execute("VACUUM (ANALYZE) vigil.rollup_1h")
        conn.execute("VACUUM (ANALYZE) vigil.rollup_1d")
        marks = {w.tier: w.materialised_to_us for w in read_watermarks(conn).values()}
        print(
            f"1h and 1d built ({time.perf_counter() - began:.1f} s, untimed); watermarks "
            + ", ".join(f"{t} {_at(v):%H:%M}" for t, v in marks.items() if v is not None),
            flush=True,
        )

        # As vigil.wiring.redis_client builds it (importing vigil.wiring from here would
        # import the `ingest` package, which bench/ingest.py shadows on this path).
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
        cache = ResultsCache(
            client,
            freshness_us=int(settings.query.cache_freshness.total_seconds() * US),
            ttl_s=int(settings.query.cache_ttl.total_seconds()),
            prefix=CACHE_PREFIX,
        )
        queries = [expr for _, expr in q.QUERIES]
        try:
            # The variants take turns, run by run, so the dead tuples that repeated
            # upserts of the same 1h and 1d rows leave weigh on each alike.
            variants = [
                RepairVariant(
                    Job(name),
                    late_batch_factory(q, dataset, tenant_id, positions, name),
                    cache if with_cache else None,
                    [hour2 + (offset + run + 1) * MINUTE_US for run in range(args.repeat)],
                )
                for name, positions, offset, with_cache in (
                    ("repair_all_series", None, 0, True),
                    ("repair_one_metric", [0], args.repeat, True),
                    ("repair_all_series_database_only", None, 2 * args.repeat, False),
                )
            ]
            writer = SampleWriter(SeriesCatalog())
            for run in range(args.repeat):
                for variant in variants:
                    repair_once(
                        conn,
                        writer,
                        variant,
                        run,
                        client,
                        partial(
                            fill_cache,
                            tenant_id=str(tenant_id),
                            queries=queries,
                            low_us=start,
                            high_us=end,
                        ),
                    )
            jobs.extend(variant.job for variant in variants)
            check_repaired(conn, hour2, args.repeat, dataset)
            # The plans of the jobs so far, before the backfill's data evicts theirs from
            # the buffer cache.
            missed = {job.name for job in jobs if job.summary().get("target_met") is False}
            if args.explain or "1m_minute" in missed:
                minute = hour2 + 30 * MINUTE_US
                plans["1m_minute"] = explain(conn, "1m", minute, minute + MINUTE_US)
            if args.explain or "1h_hour" in missed:
                plans["1h_hour"] = explain(conn, "1h", hour2, hour2 + HOUR_US)
            if args.explain or "repair_all_series" in missed:
                minute = hour2 + 45 * MINUTE_US
                plans["repair_all_series"] = explain_repair(
                    conn, tenant_id, tenant_metrics(conn, tenant_id), minute - MINUTE_US, minute
                )
            if backfill is not None:
                fill = partial(
                    fill_cache,
                    tenant_id=str(backfill.tenant_id),
                    queries=queries,
                    low_us=backfill.high_us - HOUR_US,
                    high_us=backfill.high_us,
                )
                batch = settings.rollup.repair_batch
                jobs.append(backfill_job(conn, backfill, cache, fill, batch))
                if args.explain or jobs[-1].summary()["target_met"] is False:
                    # Its first batch again (the rows it wrote deleted and written again):
                    # as many metrics as fill one batch with their late minutes.
                    metrics = tenant_metrics(conn, backfill.tenant_id)
                    first = metrics[: max(1, batch // backfill.minutes)]
                    plans["repair_backfill"] = explain_repair(
                        conn, backfill.tenant_id, first, backfill.late_low_us, backfill.high_us
                    )
        finally:
            for key in client.scan_iter(match=f"{CACHE_PREFIX}:*", count=1000):
                client.delete(key)

        summaries = [job.summary() for job in jobs]
    for name, plan in plans.items():
        print(f"\nEXPLAIN (ANALYZE, BUFFERS) {name}:\n{plan}")
    print()
    print(table(summaries))
    for s in summaries:
        if "samples_per_s" in s:
            print()
            print(backfill_table(s))
    return {
        "dataset": {"series": dataset.series, "hours": dataset.hours, "samples": dataset.samples},
        "load": load,
        "jobs": summaries,
        "targets_met": all(s.get("target_met", True) for s in summaries),
        "plans": plans,
        "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
    }


def tenant_metrics(conn: psycopg.Connection, tenant_id: Any) -> list[str]:
    """The tenant's metric names, sorted."""
    rows = conn.execute(
        "SELECT DISTINCT metric FROM vigil.series WHERE tenant_id = %s ORDER BY 1", (tenant_id,)
    )
    return [metric for (metric,) in rows]


def check_repaired(conn: psycopg.Connection, hour2: int, repeat: int, dataset: Any) -> None:
    """Fail unless every repaired minute counts its late sample: 7 samples in each of the
    all-series minutes (first and third runs of minutes), and in the one-metric minutes
    (the second) for cpu_usage only."""
    found = conn.execute(
        """
        SELECT count(*) FILTER (WHERE r.samples = 7
                                AND (r.bucket <= %(split)s OR r.bucket > %(split2)s)),
               count(*) FILTER (WHERE r.samples = 7 AND r.bucket > %(split)s
                                AND r.bucket <= %(split2)s AND s.metric = 'cpu_usage'),
               count(*) FILTER (WHERE r.samples = 7 AND r.bucket > %(split)s
                                AND r.bucket <= %(split2)s AND s.metric <> 'cpu_usage')
        FROM vigil.rollup_1m AS r JOIN vigil.series AS s ON s.id = r.series_id
        WHERE r.bucket > %(low)s AND r.bucket <= %(high)s
        """,
        {
            "low": _at(hour2),
            "split": _at(hour2 + repeat * MINUTE_US),
            "split2": _at(hour2 + 2 * repeat * MINUTE_US),
            "high": _at(hour2 + 3 * repeat * MINUTE_US),
        },
    ).fetchone()
    expected = (2 * repeat * dataset.series, repeat * dataset.hosts, 0)
    if tuple(found or ()) != expected:
        raise RuntimeError(f"repaired 1m rows with 7 samples: {found}, expected {expected}")
    print(f"repairs verified: every late sample counted in its 1m bucket ({expected})", flush=True)


def table(summaries: list[dict[str, Any]]) -> str:
    """The jobs' figures as a table."""
    rows = []
    for s in summaries:
        verdict = "-"
        if "target_s" in s:
            verdict = f"{'PASS' if s['target_met'] else 'MISS'} (<= {s['target_s']:g} s)"
        elif "target_samples_per_s" in s:
            verdict = (
                f"{'PASS' if s['target_met'] else 'MISS'} "
                f"(>= {s['target_samples_per_s']:,} samples/s)"
            )
        rows.append(
            [
                s["name"],
                s["runs"],
                f"{s['median_s']:.3f} / {s['p95_s']:.3f}",
                f"{s['rows']:,}" if isinstance(s["rows"], int) else s["rows"],
                f"{s['rows_per_s']:,}",
                f"{s['plain_median_s']:.3f} ({s['plain_rows_per_s']:,}/s)"
                if "plain_median_s" in s
                else "-",
                f"{s['vs_plain']}x" if "vs_plain" in s else "-",
                verdict,
            ]
        )
    return tabulate(
        rows,
        headers=[
            "job",
            "runs",
            "median / p95 s",
            "rows",
            "rows/s",
            "plain INSERT..SELECT\nmedian s (rows/s)",
            "vs plain",
            "target (p95)",
        ],
    )


def backfill_table(s: dict[str, Any]) -> str:
    """The backfill repair's samples per second beside its ceiling and the ingest rates."""
    rows = [
        ["repair (repair_and_invalidate, batches until the log is empty)", s["samples_per_s"]],
        ["plain INSERT ... SELECT of 1m, 1h and 1d (same run)", s["plain_samples_per_s"]],
        ["late samples written through SampleWriter (same run)", s["late_write_samples_per_s"]],
        ["end-to-end ingest, bench/ingest.py (remote write, issue 3)", s["ingest_samples_per_s"]],
    ]
    return tabulate(
        [[name, f"{rate:,}"] for name, rate in rows],
        headers=[f"backfill of {s['samples']:,} samples", "samples/s"],
    )


def arguments() -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\nUsage:")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--hosts", type=int, default=100, help="hosts (default 100)")
    parser.add_argument("--metrics", type=int, default=100, help="series per host (default 100)")
    parser.add_argument("--hours", type=int, default=3, help="hours of raw data (default 3)")
    parser.add_argument("--repeat", type=int, default=7, help="runs per job (default 7)")
    parser.add_argument(
        "--hour-repeat", type=int, default=3, help="runs of the 60-minute 1m build (default 3)"
    )
    parser.add_argument(
        "--backfill-hosts",
        type=int,
        default=1000,
        help="hosts of the backfill tenant (default 1000: 100k series; 0: no backfill)",
    )
    parser.add_argument(
        "--backfill-minutes",
        type=int,
        default=30,
        help="minutes at the end of its hour the backfill writes late (default 30)",
    )
    parser.add_argument("--explain", action="store_true", help="print every job's plan")
    args = parser.parse_args()
    if not 3 <= args.hours <= 22:
        parser.error(
            "--hours must be 3 to 22 (a timed hour, a hour for repairs, the rest, and the "
            "backfill hour before them in the same day)"
        )
    if args.backfill_hosts < 0 or not 1 <= args.backfill_minutes <= 60:
        parser.error("--backfill-hosts must be >= 0 and --backfill-minutes 1 to 60")
    if not 1 <= args.repeat <= 19 or args.hour_repeat < 1:
        parser.error("--repeat must be 1 to 19 (three dirty minutes per run fit in an hour)")
    return args


def main() -> None:
    args = arguments()
    settings = Settings()
    work_dir = settings.data_dir / "bench" / "rollup"
    work_dir.mkdir(parents=True, exist_ok=True)
    q = bench_query()
    with q.exclusive(work_dir / "lock"):
        summary = run(args, settings, work_dir)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
