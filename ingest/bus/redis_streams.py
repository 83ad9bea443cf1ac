"""The bus on Redis Streams: one stream per partition, one consumer group of writers.

Acknowledged entries are deleted (XACK + XDEL in one round trip), so each stream holds
exactly the envelopes not yet committed to the database and XLEN is the backlog.
Durability is Redis's AOF (`ops/redis.conf`: appendfsync everysec): a Redis crash
loses nothing the API acknowledged, a power loss up to a second of it.
Deliveries left pending by a dead writer are taken over with XAUTOCLAIM once idle
for `reclaim_idle_ms`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from ingest.bus import Delivery
from ingest.errors import BusUnavailable

# Seconds a client should wait before retrying when Redis cannot be reached.
_RETRY_AFTER_S = 5.0
# How long a backlog figure may be reused: the API asks on every request.
_BACKLOG_TTL_S = 0.25


def _unavailable(exc: Exception) -> BusUnavailable:
    return BusUnavailable(f"redis bus unavailable: {exc}", _RETRY_AFTER_S)


def _stream_names(prefix: str, partitions: int) -> list[str]:
    return [f"{prefix}:{partition}" for partition in range(partitions)]


class RedisStreamsPublisher:
    """Appends envelopes to the partition streams."""

    def __init__(self, client: redis.Redis, prefix: str, partitions: int) -> None:
        self._client = client
        self._streams = _stream_names(prefix, partitions)
        self._backlog = (0, -1.0)

    @property
    def partitions(self) -> int:
        """How many partition streams there are."""
        return len(self._streams)

    def publish(self, messages: Sequence[tuple[int, bytes]]) -> None:
        """XADD every message in one pipelined round trip."""
        if not messages:
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for partition, payload in messages:
                    pipe.xadd(self._streams[partition], {"e": payload})
                pipe.execute()
        except redis.RedisError as exc:
            raise _unavailable(exc) from None

    def backlog(self) -> int:
        """Entries in all partition streams, refreshed at most every 250 ms."""
        count, measured_at = self._backlog
        now = time.monotonic()
        if now - measured_at < _BACKLOG_TTL_S:
            return count
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for stream in self._streams:
                    pipe.xlen(stream)
                count = sum(pipe.execute())
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        self._backlog = (count, now)
        return count

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()


class RedisStreamsConsumer:
    """One writer in the consumer group, reading every partition stream."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        partitions: int,
        group: str,
        name: str,
        reclaim_idle_ms: int = 30_000,
    ) -> None:
        self._client = client
        self._streams = _stream_names(prefix, partitions)
        self._group = group
        self._name = name
        self._reclaim_idle_ms = reclaim_idle_ms
        self._next_reclaim = 0.0
        self._rotation = 0
        self._ensure_groups()

    def _ensure_groups(self) -> None:
        try:
            for stream in self._streams:
                try:
                    self._client.xgroup_create(stream, self._group, id="0", mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
        except redis.RedisError as exc:
            raise _unavailable(exc) from None

    def receive(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        """Reclaimed deliveries first (checked every few seconds), then new ones."""
        try:
            deliveries = self._reclaim(max_messages)
            if deliveries:
                return deliveries
            # COUNT applies per stream: split the budget over at most max_messages streams
            # (rotating which), so one receive never returns more than asked for.
            width = min(len(self._streams), max(1, max_messages))
            streams = [
                self._streams[(self._rotation + i) % len(self._streams)] for i in range(width)
            ]
            self._rotation = (self._rotation + width) % len(self._streams)
            response: list[Any] = self._client.xreadgroup(  # type: ignore[assignment]
                self._group,
                self._name,
                {stream: ">" for stream in streams},
                count=max(1, max_messages // width),
                block=max(1, int(timeout_s * 1000)),
            )
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                self._ensure_groups()
                return []
            raise _unavailable(exc) from None
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        return [
            Delivery(self._partition(stream), fields[b"e"], entry_id)
            for stream, entries in response or []
            for entry_id, fields in entries
            if fields
        ]

    def _reclaim(self, max_messages: int) -> list[Delivery]:
        now = time.monotonic()
        if now < self._next_reclaim:
            return []
        self._next_reclaim = now + min(5.0, self._reclaim_idle_ms / 2000)
        deliveries: list[Delivery] = []
        for stream in self._streams:
            claimed: list[Any] = self._client.xautoclaim(
                stream,
                self._group,
                self._name,
                min_idle_time=self._reclaim_idle_ms,
                start_id="0-0",
                count=max_messages - len(deliveries),
            )
            partition = self._partition(stream)
            for entry_id, fields in claimed[1]:
                if fields:  # an entry deleted while pending comes back as None
                    deliveries.append(Delivery(partition, fields[b"e"], entry_id))
            if len(deliveries) >= max_messages:
                self._next_reclaim = now  # more may be waiting
                break
        return deliveries

    def _partition(self, stream: bytes | str) -> int:
        name = stream.decode() if isinstance(stream, bytes) else stream
        return int(name.rsplit(":", 1)[1])

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """XACK and XDEL the deliveries, per stream, in one round trip."""
        by_stream: dict[str, list[bytes]] = {}
        for delivery in deliveries:
            assert isinstance(delivery.handle, bytes)
            by_stream.setdefault(self._streams[delivery.partition], []).append(delivery.handle)
        if not by_stream:
            return
        try:
            with self._client.pipeline(transaction=True) as pipe:
                for stream, ids in by_stream.items():
                    pipe.xack(stream, self._group, *ids)
                    pipe.xdel(stream, *ids)
                pipe.execute()
        except redis.RedisError as exc:
            raise _unavailable(exc) from None

    def close(self) -> None:
        """Release the connection; pending deliveries are reclaimed by others when idle."""
        self._client.close()
