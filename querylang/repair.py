"""Rollup repair as the read path sees it: recompute the buckets late samples landed
in, then drop the cached query results that read them.

The database commit comes first, then the invalidation, which also bumps the
tenant's cache generation: a query that read the rows before the commit and
finishes after the invalidation finds the generation moved and does not store its
answer (querylang/results_cache.py). If Redis fails, the repaired buckets go back
into the invalidation log and the error propagates: the next repair recomputes them
(an idempotent upsert) and invalidates again, so no stale cached answer outlives a
Redis outage.
"""

from __future__ import annotations

import psycopg
import redis

from querylang.results_cache import ResultsCache
from storage.rollups import Repair, remark, repair


def repair_and_invalidate(
    conn: psycopg.Connection, cache: ResultsCache | None, limit: int
) -> Repair:
    """Repair up to `limit` dirty 1m buckets and every coarser bucket holding them,
    then invalidate the cached results of the ranges rewritten."""
    done = repair(conn, limit)
    if cache is None:
        return done
    try:
        for change in done.invalidations:
            cache.invalidate(str(change.tenant_id), change.metric, change.start_us, change.end_us)
    except redis.RedisError:
        remark(conn, done.buckets)
        raise
    return done
