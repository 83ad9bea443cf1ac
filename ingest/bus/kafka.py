"""The bus on Kafka (kafka-python): one topic, envelopes on the partition the caller picks.

The API routes each envelope to a partition by hash of tenant, metric and labels (the
caller decides; this module only honours the number), so one series always lands on
one partition and is written by one writer at a time. Producers wait for acks from all
in-sync replicas before the API answers 202. Writers never auto-commit: a member
commits offsets only in `ack`, after the database commit, so a writer that dies or
loses its partitions in a rebalance leaves its uncommitted tail to be delivered again,
and the write ledger downstream drops whatever of it was already stored.
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
    RebalanceInProgressError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata

from ingest.bus import Delivery
from ingest.errors import BusUnavailable

log = logging.getLogger(__name__)

_RETRY_AFTER_S = 5.0
# Envelopes are whole agent batches; Kafka's 1 MiB default would refuse the large ones.
_MAX_MESSAGE_BYTES = 32 << 20
# Long enough to batch one request's envelopes, short against the API's latency.
_LINGER_MS = 2
# No leader epoch: kafka-python 2.x's OffsetAndMetadata requires the field.
_NO_LEADER_EPOCH = -1


def _unavailable(exc: Exception) -> BusUnavailable:
    return BusUnavailable(f"kafka bus unavailable: {type(exc).__name__}: {exc}", _RETRY_AFTER_S)


def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    timeout_s: float = 10.0,
    replication_factor: int = 1,
) -> None:
    """Create the topic unless it exists; fail unless it has at least `partitions` partitions."""
    # replication_factor 1 suits one broker; a production cluster wants 3 with the
    # topic's min.insync.replicas at 2, or a topic created by its operators beforehand.
    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=timeout_ms,
            api_version_auto_timeout_ms=timeout_ms,
        )
        try:
            admin.create_topics(
                [NewTopic(topic, partitions, replication_factor)], timeout_ms=timeout_ms
            )
        except TopicAlreadyExistsError:
            pass
        except IncompatibleBrokerVersion:
            # Brokers without CreateTopics (librdkafka's mock cluster) create topics on
            # first use; the metadata request below does that, and the count is checked.
            log.info("kafka broker cannot create topics; relying on auto-creation of %s", topic)
        finally:
            admin.close()
        probe = KafkaProducer(
            bootstrap_servers=bootstrap,
            max_block_ms=timeout_ms,
            api_version_auto_timeout_ms=timeout_ms,
        )
        try:
            found = probe.partitions_for(topic) or set()
        finally:
            probe.close(timeout=timeout_s)
    except KafkaError as exc:
        raise _unavailable(exc) from None
    if len(found) < partitions:
        # Not transient, but it is the bus refusing envelopes for the missing partitions.
        raise BusUnavailable(
            f"kafka topic {topic!r} has {len(found)} partitions, fewer than bus.partitions "
            f"= {partitions}; add partitions to the topic or lower VIGIL_BUS__PARTITIONS",
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
        backlog_ttl_s: float = 0.5,
    ) -> None:
        self._topic = topic
        self._partitions = partitions
        self._group = group
        self._timeout_s = timeout_s
        self._backlog_ttl_s = backlog_ttl_s
        self._topic_partitions = [TopicPartition(topic, p) for p in range(partitions)]
        timeout_ms = int(timeout_s * 1000)
        opened: list[Any] = []
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                acks="all",
                linger_ms=_LINGER_MS,
                max_request_size=_MAX_MESSAGE_BYTES,
                max_block_ms=timeout_ms,
                request_timeout_ms=timeout_ms,
                # Past this the producer stops retrying in the background too, so a
                # refused batch does not land later beside the agent's retry of it.
                delivery_timeout_ms=timeout_ms + _LINGER_MS,
                api_version_auto_timeout_ms=timeout_ms,
            )
            opened.append(self._producer)
            # Committed offsets of all partitions in one OffsetFetch, without joining the
            # group (KafkaConsumer.committed would ask once per partition).
            self._admin = KafkaAdminClient(
                bootstrap_servers=bootstrap,
                request_timeout_ms=timeout_ms,
                api_version_auto_timeout_ms=timeout_ms,
            )
            opened.append(self._admin)
            # Log start and end offsets; no group_id, so it never joins or commits.
            self._offsets = KafkaConsumer(
                bootstrap_servers=bootstrap,
                request_timeout_ms=timeout_ms,
                api_version_auto_timeout_ms=timeout_ms,
            )
        except KafkaError as exc:
            for client in opened:
                client.close()
            raise _unavailable(exc) from None
        self._backlog_lock = threading.Lock()
        self._backlog = 0
        self._backlog_at = -float("inf")

    @property
    def partitions(self) -> int:
        """How many partitions envelopes are spread over."""
        return self._partitions

    def publish(self, messages: Sequence[tuple[int, bytes]]) -> None:
        """Send every message and return once the brokers have acknowledged all of them."""
        deadline = time.monotonic() + self._timeout_s
        try:
            futures = [
                self._producer.send(self._topic, value=payload, partition=partition)
                for partition, payload in messages
            ]
            for future in futures:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaError as exc:
            raise _unavailable(exc) from None

    def backlog(self) -> int:
        """Records past the group's committed offsets, measured at most every `backlog_ttl_s`."""
        with self._backlog_lock:
            now = time.monotonic()
            if now - self._backlog_at >= self._backlog_ttl_s:
                self._backlog = self._measure_backlog()
                self._backlog_at = now
            return self._backlog

    def _measure_backlog(self) -> int:
        partitions = self._topic_partitions
        try:
            # Explicit partitions: asking for "all" fails on some brokers (the mock).
            committed: dict[Any, Any] = self._admin.list_consumer_group_offsets(
                self._group, partitions=partitions
            )
            ends: dict[Any, int] = self._offsets.end_offsets(partitions)
            # Never committed (offset -1) or behind retention: the group starts at the log start.
            starts: dict[Any, int] = self._offsets.beginning_offsets(partitions)
        except KafkaError as exc:
            raise _unavailable(exc) from None
        total = 0
        for tp in partitions:
            entry = committed.get(tp)
            position = max(entry.offset if entry is not None else -1, starts[tp])
            total += max(0, ends[tp] - position)
        return total

    def close(self) -> None:
        """Flush pending sends and release connections."""
        self._producer.close(timeout=self._timeout_s)
        self._admin.close()
        self._offsets.close()


class KafkaConsumerMember:
    """One writer in the consumer group; offsets are committed only by `ack`."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        name: str,
        session_timeout_ms: int = 10_000,
        max_poll_interval_ms: int = 300_000,
        max_poll_records: int = 1000,
        timeout_s: float = 10.0,
    ) -> None:
        self._timeout_ms = int(timeout_s * 1000)
        try:
            self._consumer = KafkaConsumer(
                topic,
                bootstrap_servers=bootstrap,
                group_id=group,
                client_id=name,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=max_poll_records,
                session_timeout_ms=session_timeout_ms,
                # A writer stuck longer than this (say, retrying a database that is down)
                # leaves the group; its partitions go to the others.
                max_poll_interval_ms=max_poll_interval_ms,
                heartbeat_interval_ms=max(1000, session_timeout_ms // 3),
                # Must exceed the session timeout (kafka-python checks it).
                request_timeout_ms=max(self._timeout_ms, session_timeout_ms + 5000),
                max_partition_fetch_bytes=_MAX_MESSAGE_BYTES,
                fetch_max_bytes=2 * _MAX_MESSAGE_BYTES,
                api_version_auto_timeout_ms=self._timeout_ms,
            )
        except KafkaError as exc:
            raise _unavailable(exc) from None

    def receive(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        """Poll for up to `max_messages` records, joining or rebalancing the group as needed."""
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
        # A partition revoked since these were received belongs to another member now,
        # which received them again; committing for it could move its offset backwards.
        owned = self._consumer.assignment()
        lost = sorted(tp.partition for tp in offsets if tp not in owned)
        if lost:
            log.warning("not committing partitions %s: reassigned since received", lost)
        commit = {
            tp: OffsetAndMetadata(offset, "", _NO_LEADER_EPOCH)
            for tp, offset in offsets.items()
            if tp in owned
        }
        if not commit:
            return
        try:
            self._consumer.commit(commit, timeout_ms=self._timeout_ms)
        except (CommitFailedError, RebalanceInProgressError) as exc:
            # This member left the group or the group is rebalancing: whoever owns these
            # partitions next receives the records again and the write ledger drops the
            # repeats. Raising BusUnavailable instead would have the writer retry the ack
            # without ever polling, which is what completes a rebalance.
            log.warning("offset commit refused, records will be delivered again: %s", exc)
        except KafkaError as exc:
            raise _unavailable(exc) from None

    def close(self) -> None:
        """Leave the group without committing anything."""
        self._consumer.close(autocommit=False, timeout_ms=self._timeout_ms)
