"""Rollup repair as the read path needs it: recompute the buckets late samples landed
in (`storage.rollups.repair`), then drop the cached query results that read them.

The database commit comes first, then the invalidation. The results cache
(querylang/results_cache.py) also bumps the tenant's cache generation there, so a
query that read the rows before the commit and finishes after the invalidation does
not store its answer. If the invalidation fails, the repaired buckets go back into
the invalidation log and the error propagates: the next repair recomputes them (an
idempotent rewrite) and invalidates again, so no stale cached answer outlives an
outage of the cache.
"""

from __future__ import annotations

from typing import Protocol

import psycopg

from storage.rollups import Repair, remark, repair


class Invalidator(Protocol):
    """Drops cached results that read a (tenant, metric) over a time range."""

    def invalidate(self, tenant_id: str, metric: str, start_us: int, end_us: int) -> object:
        """Drop every cached result that read samples of (tenant, metric) in [start, end].

        Raises when that cannot be done (whatever its exception type: the repair puts
        its buckets back into the log on any Exception); the return value is ignored.
        """
        ...


def repair_and_invalidate(
    conn: psycopg.Connection, invalidator: Invalidator | None, limit: int, batches: int = 1
) -> Repair:
    """Repair up to `limit` dirty 1m buckets and every coarser bucket holding them, then
    invalidate the cached results of the ranges rewritten; up to `batches` times, each in
    a transaction of its own, stopping after one that found fewer than `limit`."""
    done: list[Repair] = []
    for _ in range(batches):
        done.append(_repair_batch(conn, invalidator, limit))
        if len(done[-1].buckets) < limit:
            break
    return Repair(
        tuple(bucket for batch in done for bucket in batch.buckets),
        sum(batch.rows for batch in done),
        tuple(change for batch in done for change in batch.invalidations),
    )


def _repair_batch(conn: psycopg.Connection, invalidator: Invalidator | None, limit: int) -> Repair:
    done = repair(conn, limit)
    if invalidator is None:
        return done
    try:
        for change in done.invalidations:
            invalidator.invalidate(
                str(change.tenant_id), change.metric, change.start_us, change.end_us
            )
    except Exception:
        # Any failure, not only the cache client's own errors: storage cannot know
        # them, and an invalidation that did not happen must be retried.
        remark(conn, done.buckets)
        raise
    return done
