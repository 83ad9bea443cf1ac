"""The rollup engine: 1m buckets from raw samples, 1h from 1m, 1d from 1h.

Each tier is a hypertable of per-series bucket aggregates (sql/0006_rollups.sql says
what every column means). Runs are incremental and idempotent:

- **Materialise** (`materialise`): a tier's closed buckets past its watermark, in two
  transactions. The first (skipped when another run of the tier holds its watermark
  row) raises `claimed_to`, under an exclusive lock that waits for every in-flight
  sample write (writers hold it shared, `mark_late`), so a sample
  committed later at or before the claim is logged as late. The second upserts the
  claimed buckets and moves `materialised_to` up to the claim. A run dying between the
  two leaves the claim to the next run; re-running a window rewrites identical rows.
- **Late data** (`mark_late`, called by the sample writer in its own transaction):
  samples at or before the 1m claim are recorded per (tenant, metric, 1m bucket) in
  the invalidation log, `vigil.rollup_dirty`.
- **Repair** (`repair`): claims dirty buckets the 1m tier already holds, a (tenant,
  metric) at a time, locking only the log rows it takes (`SKIP LOCKED`: a bucket a
  writer is marking again is left to the next repair; a writer marking a bucket the
  repair took waits for its commit, then logs the bucket anew). It coalesces them into
  contiguous ranges, recomputes each range from raw series by series, then the 1h and
  1d buckets around them from the tier below (where those tiers are built), deletes
  the log rows, all in one transaction, and says which (tenant, metric, time range)
  changed so cached query results can be dropped.

Rollup runs and repairs take one maintenance lock, so they never rewrite a tier
concurrently; that is what lets a repair delete its ranges' rows and insert them
again without ON CONFLICT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from storage.queries import query
from storage.tiers import MINUTE_US, ROLLUP_TIERS, TIERS, Tier
from storage.timestamps import to_datetime, to_unix_us


@dataclass(frozen=True)
class Watermark:
    """How far a tier is built: every bucket ending at or before `materialised_to_us`
    is in it; samples at or before `claimed_to_us` are late (None: no run yet)."""

    tier: str
    claimed_to_us: int | None
    materialised_to_us: int | None


@dataclass(frozen=True)
class RollupRun:
    """What one materialise run did: buckets ending in (start, end] of `tier`
    (start == end: nothing was due), and the rows upserted."""

    tier: str
    start_us: int
    end_us: int
    rows: int


@dataclass(frozen=True)
class Invalidation:
    """Tier rows of (tenant, metric) covering samples in (start, end] were rewritten."""

    tenant_id: UUID
    metric: str
    start_us: int
    end_us: int


@dataclass(frozen=True)
class DirtyBucket:
    """A 1m bucket (by end) of (tenant, metric) that late samples landed in."""

    tenant_id: UUID
    metric: str
    bucket_us: int


@dataclass(frozen=True)
class Repair:
    """What one repair did: the dirty 1m buckets it cleared, the tier rows it
    rewrote, and the ranges whose cached query results are now stale."""

    buckets: tuple[DirtyBucket, ...]
    rows: int
    invalidations: tuple[Invalidation, ...]


def read_watermarks(conn: psycopg.Connection) -> dict[str, Watermark]:
    """Every tier's watermarks."""
    return {
        tier: Watermark(tier, _micros(claimed), _micros(materialised))
        for tier, claimed, materialised in conn.execute(query("select_watermarks"))
    }


def dirty_count(conn: psycopg.Connection) -> int:
    """How many dirty (tenant, metric, 1m bucket) entries wait for repair."""
    row = conn.execute(query("count_dirty")).fetchone()
    assert row is not None
    return int(row[0])


def materialise(
    conn: psycopg.Connection, tier: str, now_us: int, settle_us: int, max_buckets: int
) -> RollupRun:
    """Build `tier`'s closed buckets past its watermark, at most `max_buckets` of them.

    A 1m bucket is closed once `settle_us` has passed since its end; a coarser bucket
    once the tier below is built past its end. `conn` is in autocommit mode.
    """
    spec = ROLLUP_TIERS[tier]
    oldest = _first_bucket_start(conn, spec)
    with conn.transaction():
        row = conn.execute(query("try_lock_watermark"), {"tier": tier}).fetchone()
        if row is None:  # another run of this tier holds it: leave the work to that one
            return RollupRun(tier, 0, 0, 0)
        claimed, materialised = _micros(row[0]), _micros(row[1])
        start = materialised if materialised is not None else oldest
        closed = _closed_end(conn, spec, now_us, settle_us)
        if closed is not None:
            start = closed if start is None else min(start, closed)
            target = min(closed, start + max_buckets * spec.width_us)
            if claimed is None or target > claimed:
                if spec.source == "raw":  # held only until this claim commits
                    conn.execute(query("lock_late_marking"))
                conn.execute(
                    query("claim_watermark"), {"tier": tier, "claimed_to": to_datetime(target)}
                )
    with conn.transaction():
        conn.execute(query("lock_rollup_maintenance"))
        claimed, materialised = _locked_watermark(conn, tier)
        if claimed is None:  # nothing below to build from yet
            return RollupRun(tier, 0, 0, 0)
        low = next(bound for bound in (materialised, start, claimed) if bound is not None)
        rows = materialise_window(conn, tier, low, claimed) if claimed > low else 0
        conn.execute(
            query("complete_watermark"), {"tier": tier, "materialised_to": to_datetime(claimed)}
        )
    return RollupRun(tier, low, max(claimed, low), rows)


def materialise_window(conn: psycopg.Connection, tier: str, low_us: int, high_us: int) -> int:
    """Upsert every bucket of `tier` ending in (low, high] from its source, whatever
    the watermarks say; returns the rows written. Bounds must be bucket ends."""
    spec = ROLLUP_TIERS[tier]
    if low_us % spec.width_us or high_us % spec.width_us:
        raise ValueError(f"bounds must be multiples of the {tier} bucket width")
    params = {
        "width": _interval(spec.width_us),
        "low": to_datetime(low_us),
        "high": to_datetime(high_us),
    }
    rows = "raw_rows_window" if spec.source == "raw" else "tier_rows_window"
    return conn.execute(_statement(spec, "upsert_buckets", rows), params).rowcount


def mark_late(
    conn: psycopg.Connection,
    series_ids: npt.NDArray[np.int64],
    times_us: npt.NDArray[np.int64],
) -> int:
    """Log the 1m buckets of samples at or behind the 1m tier's claim, in the caller's
    transaction, which holds the watermark-raise lock until it ends; returns how
    many samples were late."""
    row = conn.execute(query("late_sample_horizon")).fetchone()
    horizon = None if row is None else _micros(row[0])
    if horizon is None or not len(times_us):
        return 0
    late = times_us <= horizon
    count = int(np.count_nonzero(late))
    if count:
        ids, buckets = series_ids[late], ROLLUP_TIERS["1m"].bucket_end(times_us[late])
        # Distinct (series, bucket) pairs by a sort and a comparison with the row before:
        # np.unique(axis=1) took 15 times as long (0.2 s for a backfill's 180k samples).
        order = np.lexsort((buckets, ids))
        ids, buckets = ids[order], buckets[order]
        distinct = np.ones(len(ids), dtype=bool)
        distinct[1:] = (ids[1:] != ids[:-1]) | (buckets[1:] != buckets[:-1])
        conn.execute(
            query("mark_late_buckets"),
            {
                "series_ids": ids[distinct].tolist(),
                "buckets": [to_datetime(int(bucket)) for bucket in buckets[distinct]],
            },
        )
    return count


def repair(conn: psycopg.Connection, limit: int) -> Repair:
    """Recompute up to `limit` dirty 1m buckets and the coarser buckets holding them,
    and clear them from the log, in one transaction (`conn` in autocommit mode)."""
    with conn.transaction():
        conn.execute(query("lock_rollup_maintenance"))
        watermarks = read_watermarks(conn)
        built = watermarks["1m"].materialised_to_us
        if built is None:
            return Repair((), 0, ())
        claimed = sorted(
            (
                DirtyBucket(tenant_id, metric, to_unix_us(bucket))
                for tenant_id, metric, bucket in conn.execute(
                    query("claim_dirty"), {"materialised_to": to_datetime(built), "limit": limit}
                )
            ),
            key=_key,
        )
        rows = 0
        invalidations: list[Invalidation] = []
        # Each claimed bucket as a one-bucket range; every tier coalesces the ranges below.
        ranges = [
            _Range(b.tenant_id, b.metric, b.bucket_us - MINUTE_US, b.bucket_us) for b in claimed
        ]
        for spec in ROLLUP_TIERS.values():
            built = watermarks[spec.name].materialised_to_us
            if built is None:
                break
            ranges = _coarsened(ranges, spec, built)
            if not ranges:
                break
            rows += _rewrite(conn, spec, ranges)
            invalidations += [
                Invalidation(r.tenant_id, r.metric, r.low_us, r.high_us) for r in ranges
            ]
    return Repair(tuple(claimed), rows, tuple(invalidations))


def remark(conn: psycopg.Connection, buckets: Sequence[DirtyBucket]) -> None:
    """Put repaired buckets back in the log, for a repair whose cache invalidation
    failed after its commit: the next repair redoes both."""
    if buckets:
        conn.execute(
            query("remark_dirty"),
            {
                "tenant_ids": [b.tenant_id for b in buckets],
                "metrics": [b.metric for b in buckets],
                "buckets": [to_datetime(b.bucket_us) for b in buckets],
            },
        )


@dataclass(frozen=True)
class _Range:
    """The buckets of (tenant, metric) ending in (low, high] of one tier."""

    tenant_id: UUID
    metric: str
    low_us: int
    high_us: int


def _coarsened(ranges: Sequence[_Range], spec: Tier, built_us: int) -> list[_Range]:
    """The buckets of `spec` holding the finer `ranges` (sorted by tenant, metric and
    low) and built by `built_us`, as few contiguous ranges as cover them, sorted."""
    out: list[_Range] = []
    for fine in ranges:
        low = spec.floor(fine.low_us)
        high = min(spec.bucket_end(fine.high_us), spec.floor(built_us))
        if high <= low:
            continue
        key = (fine.tenant_id, fine.metric)
        if out and (out[-1].tenant_id, out[-1].metric) == key and low <= out[-1].high_us:
            out[-1] = replace(out[-1], high_us=max(out[-1].high_us, high))
        else:
            out.append(_Range(fine.tenant_id, fine.metric, low, high))
    return out


def _rewrite(conn: psycopg.Connection, spec: Tier, ranges: Sequence[_Range]) -> int:
    """Delete a tier's rows in `ranges` and insert them again from the tier below."""
    params = {
        "tenant_ids": [r.tenant_id for r in ranges],
        "metrics": [r.metric for r in ranges],
        "lows": [to_datetime(r.low_us) for r in ranges],
        "highs": [to_datetime(r.high_us) for r in ranges],
        "width": _interval(spec.width_us),
        "low": to_datetime(min(r.low_us for r in ranges)),
        "high": to_datetime(max(r.high_us for r in ranges)),
    }
    delete = sql.SQL(query("delete_ranges")).format(target=sql.Identifier("vigil", spec.table))
    rows = "raw_rows_ranges" if spec.source == "raw" else "tier_rows_ranges"
    # Never prepared: a generic plan cannot know how many ranges and series it gets
    # (one, or thousands), nor which chunks the bounds exclude.
    conn.execute(delete, params, prepare=False)
    return conn.execute(_statement(spec, "insert_buckets", rows), params, prepare=False).rowcount


def _statement(spec: Tier, statement: str, rows: str) -> sql.Composed:
    """`statement` (upsert_buckets or insert_buckets) around the tier's aggregate of the
    named row source."""
    assert spec.source is not None
    source = sql.Identifier("vigil", TIERS[spec.source].view)
    aggregate = sql.SQL(query("rollup_from_raw" if spec.source == "raw" else "rollup_from_tier"))
    return sql.SQL(query(statement)).format(
        target=sql.Identifier("vigil", spec.table),
        aggregate=aggregate.format(rows=sql.SQL(query(rows)).format(source=source)),
    )


def _key(bucket: DirtyBucket) -> tuple[UUID, str, int]:
    return (bucket.tenant_id, bucket.metric, bucket.bucket_us)


def _locked_watermark(conn: psycopg.Connection, tier: str) -> tuple[int | None, int | None]:
    row = conn.execute(query("lock_watermark"), {"tier": tier}).fetchone()
    assert row is not None, f"no watermark row for tier {tier}"
    return _micros(row[0]), _micros(row[1])


def _closed_end(conn: psycopg.Connection, spec: Tier, now_us: int, settle_us: int) -> int | None:
    """The latest bucket end of `spec` whose bucket may be built now (None: none, the
    tier below has not been built)."""
    assert spec.source is not None
    if spec.source == "raw":
        return spec.floor(now_us - settle_us)
    below = read_watermarks(conn)[spec.source].materialised_to_us
    return None if below is None else spec.floor(below)


def _first_bucket_start(conn: psycopg.Connection, spec: Tier) -> int | None:
    """Where a tier's first run starts: before the oldest data of its source."""
    assert spec.source is not None
    table = TIERS[spec.source].table
    row = conn.execute(query("oldest_chunk"), {"table": table}).fetchone()
    oldest = None if row is None else _micros(row[0])
    return None if oldest is None else spec.floor(oldest - 1)


def _micros(value: datetime | None) -> int | None:
    return None if value is None else to_unix_us(value)


def _interval(duration_us: int) -> timedelta:
    return timedelta(microseconds=duration_us)


def dirty_buckets(
    conn: psycopg.Connection,
    tenant_id: str,
    metrics: Sequence[str] | None,
    low_us: int,
    high_us: int,
) -> list[int]:
    """The ends of the 1m buckets in (low, high] that late samples of the tenant's
    `metrics` (None: any metric) made stale and no repair has rewritten yet."""
    rows = conn.execute(
        query("select_dirty_buckets"),
        {
            "tenant_id": tenant_id,
            "any_metric": metrics is None,
            "metrics": list(metrics or ()),
            "low": to_datetime(low_us),
            "high": to_datetime(high_us),
        },
    )
    return [to_unix_us(bucket) for (bucket,) in rows]
