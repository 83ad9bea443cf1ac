"""The results cache: settled past from Redis, fresh tail recomputed.

A range query's answer at a step depends only on the query and that step's time
(Prometheus evaluates steps independently), so answers are cached per *block*:
`BLOCK_STEPS` consecutive steps at absolute, step-aligned times, keyed by tenant,
normalised query, step and phase (start mod step). A block is cached only once it
ends before the freshness horizon (now - freshness); everything newer is always
recomputed. A dashboard sliding over 24 h re-reads all settled blocks and computes
only the fresh tail and the partial block before it.

Invalidation is exact: every block is indexed under each metric it reads (`*` for
selectors without a fixed name) with the sample time range it read, so a late
write to (tenant, metric, range) removes just the blocks whose inputs overlap it.
Redis failing makes queries uncached, never failed.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import orjson
import redis

from querylang import ast
from querylang.planner import extent
from querylang.printer import to_promql
from querylang.result import Labels, QueryResult, Series
from storage.tiers import TIERS

log = logging.getLogger(__name__)

BLOCK_STEPS = 60
"""Steps per cached block: small enough that a 1 h dashboard at 15 s reuses most
of its range, large enough that a 24 h one at 60 s is 24 Redis values."""

RUN_BLOCKS = 100
"""Most blocks computed by one evaluation: 6,000 steps, under Prometheus's (and our
default) 11,000-point limit even though blocks overhang the query's own range."""

_HEADER = struct.Struct(">I")
_ANY_METRIC = "*"

Compute = Callable[[int, int], QueryResult]


@dataclass(frozen=True)
class _Block:
    index: int
    start_us: int
    end_us: int  # last step time in the block


class ResultsCache:
    """Range-query results in Redis, split at a freshness horizon."""

    def __init__(
        self,
        client: redis.Redis,
        freshness_us: int,
        ttl_s: int,
        prefix: str = "vigil:qc",
    ) -> None:
        self._redis = client
        self._freshness_us = freshness_us
        self._ttl_s = ttl_s
        self._prefix = prefix

    def range_query(
        self,
        tenant_id: str,
        expr: ast.Expr,
        start_us: int,
        end_us: int,
        step_us: int,
        now_us: int,
        compute: Compute,
        lookback_us: int,
    ) -> QueryResult:
        """The answer of `compute(start, end)`, reusing cached settled blocks."""
        if _pins_query_bounds(expr):
            return compute(start_us, end_us)  # `@ start()`/`@ end()` depend on the range
        horizon = now_us - self._freshness_us
        phase = start_us % step_us
        family = self._family(tenant_id, expr, step_us, phase)
        span = step_us * BLOCK_STEPS
        first_block = (start_us - phase) // span
        blocks = []
        index = first_block
        while True:
            block_start = index * span + phase
            block_end = block_start + span - step_us
            if block_end > horizon or block_start > end_us:
                break
            blocks.append(_Block(index, block_start, block_end))
            index += 1
        parts: list[QueryResult] = []
        generation = self._generation(tenant_id)
        cached = self._load(family, blocks)
        missing_runs = _runs([b for b in blocks if b.index not in cached])
        for run in missing_runs:
            result = compute(run[0].start_us, run[-1].end_us)
            parts.append(result)
            if generation is not None:
                self._store(tenant_id, family, expr, run, result, lookback_us, generation)
        parts.extend(cached.values())
        tail_start = blocks[-1].end_us + step_us if blocks else start_us
        if tail_start <= end_us:
            parts.append(compute(max(tail_start, start_us), end_us))
        return _merge(parts, start_us, end_us)

    def invalidate(self, tenant_id: str, metric: str, start_us: int, end_us: int) -> int:
        """Drop every cached block that read samples of (tenant, metric) in
        [start, end]; returns how many were dropped."""
        dropped = 0
        try:
            # First, so a result computed from the data before the change (its query
            # started earlier) is not stored after the blocks below are gone.
            self._redis.incr(self._generation_key(tenant_id))
            for name in (metric, _ANY_METRIC):
                index_key = self._index_key(tenant_id, name)
                members: list[bytes] = self._redis.zrangebyscore(  # type: ignore[assignment]
                    index_key, "-inf", end_us
                )
                doomed = []
                for member in members:
                    key, _, last = member.decode().rpartition("|")
                    if int(last) >= start_us:
                        doomed.append(member)
                        self._redis.delete(key)
                if doomed:
                    self._redis.zrem(index_key, *doomed)
                    dropped += len(doomed)
        except redis.RedisError as exc:
            # A repair must know its invalidation did not happen, so it can retry.
            log.warning("results cache invalidation failed: %s", exc)
            raise
        return dropped

    def _family(self, tenant_id: str, expr: ast.Expr, step_us: int, phase_us: int) -> str:
        normal = to_promql(expr)
        digest = hashlib.blake2b(
            f"{normal}\x00{step_us}\x00{phase_us}".encode(), digest_size=16
        ).hexdigest()
        return f"{self._prefix}:{tenant_id}:{digest}"

    def _index_key(self, tenant_id: str, metric: str) -> str:
        return f"{self._prefix}:idx:{tenant_id}:{metric}"

    def _load(self, family: str, blocks: list[_Block]) -> dict[int, QueryResult]:
        if not blocks:
            return {}
        try:
            raw: list[bytes | None] = self._redis.mget(  # type: ignore[assignment]
                [f"{family}:{b.index}" for b in blocks]
            )
        except redis.RedisError as exc:
            log.warning("results cache unavailable, computing uncached: %s", exc)
            return {}
        return {
            block.index: _decode(value)
            for block, value in zip(blocks, raw, strict=True)
            if value is not None
        }

    def _generation_key(self, tenant_id: str) -> str:
        return f"{self._prefix}:{tenant_id}:generation"

    def _generation(self, tenant_id: str) -> bytes | None:
        """The tenant's invalidation count (b"" before the first); None: Redis is down."""
        try:
            value: bytes | None = self._redis.get(self._generation_key(tenant_id))  # type: ignore[assignment]
        except redis.RedisError as exc:
            log.warning("results cache unavailable, computing uncached: %s", exc)
            return None
        return value or b""

    def _store(
        self,
        tenant_id: str,
        family: str,
        expr: ast.Expr,
        run: list[_Block],
        result: QueryResult,
        lookback_us: int,
        generation: bytes,
    ) -> None:
        """Cache a computed run's blocks, unless an invalidation for the tenant came
        after `generation` was read (the run may predate the change)."""
        generation_key = self._generation_key(tenant_id)
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.watch(generation_key)  # type: ignore[no-untyped-call]
                if (pipe.get(generation_key) or b"") != generation:
                    return
                pipe.multi()
                self._queue_blocks(pipe, tenant_id, family, expr, run, result, lookback_us)
                pipe.execute()
        except redis.WatchError:
            return  # invalidated meanwhile: not cached
        except redis.RedisError as exc:
            log.warning("results cache write failed: %s", exc)

    def _queue_blocks(
        self,
        pipe: redis.client.Pipeline,
        tenant_id: str,
        family: str,
        expr: ast.Expr,
        run: list[_Block],
        result: QueryResult,
        lookback_us: int,
    ) -> None:
        """Queue the blocks of a computed run, each indexed by what it read."""
        for block in run:
            key = f"{family}:{block.index}"
            part = _merge([result], block.start_us, block.end_us)
            pipe.set(key, _encode(part), ex=self._ttl_s)
            reads = extent(expr, block.start_us, block.end_us, lookback_us)
            # A rollup bucket holds samples up to a width before a window's start
            # (windows widened to a bucket, buckets by their middle) and after a step.
            pad = max((TIERS[t].width_us for t in part.tiers if t in TIERS), default=0)
            low, high = reads.start_us - 2 * pad, reads.end_us + pad
            for metric in reads.metrics:
                index_key = self._index_key(tenant_id, metric or _ANY_METRIC)
                pipe.zadd(index_key, {f"{key}|{high}": low})
                pipe.expire(index_key, self._ttl_s)


def _pins_query_bounds(expr: object) -> bool:
    """Whether any `@ start()`/`@ end()` makes steps depend on the query's range."""
    at = getattr(expr, "at", None)
    if isinstance(at, ast.AtModifier) and at.kind != "time":
        return True
    children = [getattr(expr, name, None) for name in ("expr", "lhs", "rhs", "param", "vector")]
    children += list(getattr(expr, "args", ()))
    return any(_pins_query_bounds(child) for child in children if child is not None)


def _runs(blocks: list[_Block]) -> list[list[_Block]]:
    """Consecutive blocks grouped (at most RUN_BLOCKS), so each gap is one computation."""
    runs: list[list[_Block]] = []
    for block in blocks:
        if runs and runs[-1][-1].index + 1 == block.index and len(runs[-1]) < RUN_BLOCKS:
            runs[-1].append(block)
        else:
            runs.append([block])
    return runs


def _merge(parts: Iterable[QueryResult], start_us: int, end_us: int) -> QueryResult:
    """One result from pieces covering parts of [start, end], clipped to it."""
    times: dict[Labels, list[np.ndarray]] = {}
    values: dict[Labels, list[np.ndarray]] = {}
    tiers: list[str] = []
    notes: list[str] = []
    for part in parts:
        tiers.extend(t for t in part.tiers if t not in tiers)
        notes.extend(n for n in part.notes if n not in notes)
        for series in part.series:
            keep = (series.times_us >= start_us) & (series.times_us <= end_us)
            if keep.any():
                times.setdefault(series.labels, []).append(series.times_us[keep])
                values.setdefault(series.labels, []).append(series.values[keep])
    merged = []
    for labels in sorted(times):
        t = np.concatenate(times[labels])
        order = np.argsort(t, kind="stable")
        merged.append(Series(labels, t[order], np.concatenate(values[labels])[order]))
    return QueryResult("matrix", merged, tuple(tiers) or ("raw",), notes=tuple(notes))


def _encode(result: QueryResult) -> bytes:
    header = orjson.dumps(
        {
            "labels": [list(map(list, s.labels)) for s in result.series],
            "counts": [len(s.times_us) for s in result.series],
            "tiers": list(result.tiers),
            "notes": list(result.notes),
        }
    )
    times = b"".join(s.times_us.astype("<i8").tobytes() for s in result.series)
    values = b"".join(s.values.astype("<f8").tobytes() for s in result.series)
    return _HEADER.pack(len(header)) + header + times + values


def _decode(blob: bytes) -> QueryResult:
    (size,) = _HEADER.unpack_from(blob)
    header = orjson.loads(blob[4 : 4 + size])
    counts = header["counts"]
    total = sum(counts)
    times = np.frombuffer(blob, dtype="<i8", count=total, offset=4 + size).astype(np.int64)
    values = np.frombuffer(blob, dtype="<f8", count=total, offset=4 + size + 8 * total)
    series = []
    offset = 0
    for labels, count in zip(header["labels"], counts, strict=True):
        series.append(
            Series(
                tuple((k, v) for k, v in labels),
                times[offset : offset + count],
                values[offset : offset + count].astype(np.float64),
            )
        )
        offset += count
    # Blocks cached before results carried notes have none.
    notes = tuple(header.get("notes", ()))
    return QueryResult("matrix", series, tuple(header["tiers"]), notes=notes)
