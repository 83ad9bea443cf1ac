"""The series catalog: (tenant, metric, labels) resolved to stable series ids."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import orjson
import psycopg

from storage.queries import query
from storage.timestamps import to_unix_us

# `last_seen` moves only when a sample is this much newer than the recorded value, so
# steady ingestion does not rewrite catalog rows (one update per series per window).
LAST_SEEN_RESOLUTION_US = int(timedelta(minutes=10).total_seconds() * 1_000_000)


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """A metric name and its label set, labels sorted by name (`__name__` excluded)."""

    metric: str
    labels: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, metric: str, labels: Mapping[str, str]) -> SeriesKey:
        """The key for a metric and an unordered label mapping."""
        return cls(metric, tuple(sorted(labels.items())))

    def fingerprint(self) -> bytes:
        """A 128-bit digest, the same in every process and release, unique per key.

        0xFF and 0xFE never occur in UTF-8, so they separate fields unambiguously.
        """
        digest = hashlib.blake2b(self.metric.encode(), digest_size=16)
        for name, value in self.labels:
            digest.update(b"\xff" + name.encode() + b"\xfe" + value.encode())
        return digest.digest()


@dataclass(slots=True)
class _Known:
    id: int
    last_seen_us: int


@dataclass(frozen=True, slots=True)
class SeriesTimes:
    """A series in a batch, with its earliest and latest sample (Unix µs)."""

    key: SeriesKey
    first_us: int
    last_us: int


class SeriesCatalog:
    """Resolves series to ids through an in-process cache and one bulk upsert for misses.

    The cache is bounded and evicts in insertion order (oldest first): cheaper than
    LRU bookkeeping on every hit, and an evicted hot series costs one catalog read.
    Writer threads may share one catalog: each step is a single dict operation, and two
    threads registering the same series both end with the one id the database holds.
    """

    def __init__(self, max_cached: int = 1_000_000) -> None:
        self._max_cached = max_cached
        # Keyed by fingerprint, not SeriesKey: a writer that received fingerprints
        # from the API finds its series without building a key (see resolve_fingerprints).
        self._known: dict[tuple[UUID, bytes], _Known] = {}

    @property
    def cached(self) -> int:
        """How many series ids are in memory."""
        return len(self._known)

    def resolve(
        self, conn: psycopg.Connection, tenant_id: UUID, series: Sequence[SeriesTimes]
    ) -> list[int]:
        """Series ids in the order given, registering unknown series and advancing last_seen.

        `conn` is in autocommit mode: registration commits in its own short transaction,
        never inside the caller's, so a new series stays registered even if the
        caller's write then fails, and no catalog lock is held during a long COPY.
        """
        return self.resolve_fingerprints(
            conn,
            tenant_id,
            [item.key.fingerprint() for item in series],
            [item.first_us for item in series],
            [item.last_us for item in series],
            lambda position: series[position].key,
        )

    def resolve_fingerprints(
        self,
        conn: psycopg.Connection,
        tenant_id: UUID,
        fingerprints: Sequence[bytes],
        firsts_us: Sequence[int],
        lasts_us: Sequence[int],
        key_of: Callable[[int], SeriesKey],
    ) -> list[int]:
        """As `resolve`, for series given by fingerprint (`SeriesKey.fingerprint()`) with
        their earliest and latest sample; `key_of(position)` is asked only for series
        the catalog must register."""
        ids: list[int] = [0] * len(fingerprints)
        missing: dict[bytes, list[int]] = {}
        # Cached entries whose last_seen lags, with the newer value; the cache moves
        # only once the catalog has, so a failed update is retried by the next batch.
        stale: dict[int, tuple[_Known, int]] = {}
        known_series = self._known
        for position, fingerprint in enumerate(fingerprints):
            known = known_series.get((tenant_id, fingerprint))
            if known is None:
                missing.setdefault(fingerprint, []).append(position)
                continue
            ids[position] = known.id
            last_us = lasts_us[position]
            if last_us >= known.last_seen_us + LAST_SEEN_RESOLUTION_US:
                newest = max(stale.get(known.id, (known, 0))[1], last_us)
                stale[known.id] = (known, newest)
        if missing:
            stale.update(self._register(conn, tenant_id, missing, firsts_us, lasts_us, key_of, ids))
        if stale:
            self._touch(conn, {series_id: us for series_id, (_, us) in stale.items()})
            for known, us in stale.values():
                known.last_seen_us = max(known.last_seen_us, us)
        return ids

    def _register(
        self,
        conn: psycopg.Connection,
        tenant_id: UUID,
        missing: dict[bytes, list[int]],
        firsts_us: Sequence[int],
        lasts_us: Sequence[int],
        key_of: Callable[[int], SeriesKey],
        ids: list[int],
    ) -> dict[int, tuple[_Known, int]]:
        """Insert the missing series and fill in their ids; returns those whose last_seen lags."""
        fingerprints = sorted(missing)
        firsts = [min(firsts_us[p] for p in missing[f]) for f in fingerprints]
        lasts = [max(lasts_us[p] for p in missing[f]) for f in fingerprints]
        keys = [key_of(missing[f][0]) for f in fingerprints]
        rows = [
            [key.metric, dict(key.labels), fingerprint.hex(), first, last]
            for key, fingerprint, first, last in zip(keys, fingerprints, firsts, lasts, strict=True)
        ]
        conn.execute(
            query("insert_series"), {"tenant_id": tenant_id, "rows": orjson.dumps(rows).decode()}
        )
        # A separate statement: its snapshot sees rows that concurrent writers committed
        # while our insert waited on them, which a CTE in the same statement would not.
        found_rows = conn.execute(
            query("select_series_by_fingerprint"),
            {"tenant_id": tenant_id, "fingerprints": b"".join(fingerprints)},
        ).fetchall()
        lagging: dict[int, tuple[_Known, int]] = {}
        found = {
            fingerprint: (series_id, last_seen) for fingerprint, series_id, last_seen in found_rows
        }
        for fingerprint, last_us in zip(fingerprints, lasts, strict=True):
            series_id, last_seen = found[fingerprint]
            known = _Known(series_id, to_unix_us(last_seen))
            if last_us >= known.last_seen_us + LAST_SEEN_RESOLUTION_US:
                lagging[series_id] = (known, last_us)
            self._remember(tenant_id, fingerprint, known)
            for position in missing[fingerprint]:
                ids[position] = series_id
        return lagging

    def _remember(self, tenant_id: UUID, fingerprint: bytes, known: _Known) -> None:
        if len(self._known) >= self._max_cached:
            for evicted in list(self._known)[: max(1, self._max_cached // 10)]:
                self._known.pop(evicted, None)  # another thread may have evicted it
        self._known[(tenant_id, fingerprint)] = known

    @staticmethod
    def _touch(conn: psycopg.Connection, last_seen_us: dict[int, int]) -> None:
        rows = [[series_id, last_seen_us[series_id]] for series_id in sorted(last_seen_us)]
        conn.execute(query("touch_series"), {"rows": orjson.dumps(rows).decode()})
