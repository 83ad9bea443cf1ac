"""The bus on Kafka (kafka-python): one topic, envelopes on the partition the caller picks.

The API routes each series to a partition by hash of tenant, metric and labels, so one
series always lands on one partition. Producers wait for acks from all in-sync
replicas before the API answers 202. Writers commit offsets manually, only after the
database commit; after a crash or rebalance the uncommitted tail is delivered again
and the write ledger drops what was already stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (
    CommitFailedError,
    IncompatibleBrokerVersion,
    KafkaError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata

from ingest.bus import Delivery
from ingest.errors import BusUnavailable

log = logging.getLogger(__name__)

_RETRY_AFTER_S = 5.0
_BACKLOG_TTL_S = 0.5


def _unavailable(exc: Exception) -> BusUnavailable:
    return BusUnavailable(f"kafka bus unavailable: {type(exc).__name__}: {exc}", _RETRY_AFTER_S)


def ensure_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float = 10.0) -> None:
    """Create the topic with `partitions` partitions unless it exists with at least that many.

    Brokers that refuse CreateTopics (e.g. librdkafka's mock cluster) auto-create on
    first use; the partition count is checked either way.
    """
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
        )
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])
        except (TopicAlreadyExistsError, IncompatibleBrokerVersion):
            pass
        finally:
            admin.close()
        probe = KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=int(timeout_s * 1000))
        try:
            found = probe.partitions_for(topic) or set()
        finally:
            probe.close()
    except KafkaError as exc:
        raise _unavailable(exc) from None
    if len(found) < partitions:
        raise BusUnavailable(
            f"kafka topic {topic!r} has {len(found)} partitions, fewer than bus.partitions "
            f"= {partitions}; add partitions or lower VIGIL_BUS__PARTITIONS",
            _RETRY_AFTER_S,
        )


class KafkaPublisher:
    """Appends envelopes to partitions of the topic, acknowledged by all in-sync replicas."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        group: str,
        timeout_s: float = 10.0,
    ) -> None:
        self._topic = topic
        self._partitions = partitions
        self._timeout_s = timeout_s
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                acks="all",
                linger_ms=2,
                max_request_size=32 << 20,
                max_block_ms=int(timeout_s * 1000),
                request_timeout_ms=int(timeout_s * 1000),
            )
            # Reads end and committed offsets for the backlog; never joins the group.
            self._monitor = KafkaConsumer(
                bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
            )
        except KafkaError as exc:
            raise _unavailable(exc) from None
        self._monitor_lock = threading.Lock()
        self._backlog = (0, -1.0)

    @property
    def partitions(self) -> int:
        """How many partitions envelopes are spread over."""
        return self._partitions

    def publish(self, messages: Sequence[tuple[int, bytes]]) -> None:
        """Send every message and wait until the brokers have acknowledged all of them."""
        try:
            futures = [
                self._producer.send(self._topic, value=payload, partition=partition)
                for partition, payload in messages
            ]
            for future in futures:
                future.get(timeout=self._timeout_s)
        except KafkaError as exc:
            raise _unavailable(exc) from None

    def backlog(self) -> int:
        """Messages past the group's committed offsets, refreshed at most every 500 ms."""
        count, measured_at = self._backlog
        now = time.monotonic()
        if now - measured_at < _BACKLOG_TTL_S:
            return count
        partitions = [TopicPartition(self._topic, p) for p in range(self._partitions)]
        try:
            with self._monitor_lock:
                ends = self._monitor.end_offsets(partitions)
                starts = self._monitor.beginning_offsets(partitions)
                committed = {tp: self._monitor.committed(tp) for tp in partitions}
        except KafkaError as exc:
            raise _unavailable(exc) from None
        count = sum(
            ends[tp] - (committed[tp] if committed[tp] is not None else starts[tp])
            for tp in partitions
        )
        self._backlog = (count, now)
        return count

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.close(timeout=self._timeout_s)
        self._monitor.close()


class KafkaConsumerMember:
    """One writer in the consumer group; offsets are committed only by `ack`."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        name: str,
        session_timeout_ms: int = 10_000,
    ) -> None:
        try:
            self._consumer = KafkaConsumer(
                topic,
                bootstrap_servers=bootstrap,
                group_id=group,
                client_id=name,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=max(1000, session_timeout_ms // 3),
                max_partition_fetch_bytes=32 << 20,
                fetch_max_bytes=64 << 20,
            )
        except KafkaError as exc:
            raise _unavailable(exc) from None

    def receive(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        """Poll for up to `max_messages` records."""
        try:
            batches: dict[Any, list[Any]] = self._consumer.poll(
                timeout_ms=int(timeout_s * 1000), max_records=max_messages
            )
        except KafkaError as exc:
            raise _unavailable(exc) from None
        return [
            Delivery(record.partition, record.value, (partition, record.offset))
            for partition, records in batches.items()
            for record in records
        ]

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Commit, per partition, the offset after the highest acknowledged record."""
        offsets: dict[TopicPartition, int] = {}
        for delivery in deliveries:
            handle: tuple[TopicPartition, int] = delivery.handle  # type: ignore[assignment]
            partition, offset = handle
            offsets[partition] = max(offsets.get(partition, -1), offset + 1)
        if not offsets:
            return
        try:
            self._consumer.commit(
                {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}
            )
        except CommitFailedError as exc:
            # The group rebalanced: another member now owns these partitions and will
            # receive the records again; the write ledger drops the repeats.
            log.warning("offset commit refused after a rebalance: %s", exc)
        except KafkaError as exc:
            raise _unavailable(exc) from None

    def close(self) -> None:
        """Leave the group without committing anything."""
        self._consumer.close(autocommit=False)
