"""The writer: takes envelopes off the bus, stores them exactly once, then acknowledges.

Acknowledging only after the commit makes delivery at-least-once; the write ledger
(storage/samples.py) makes storage exactly-once. While the database is down the
writer keeps its deliveries unacknowledged and retries with backoff, so the bus holds
the data and nothing is lost; a writer killed mid-batch leaves its deliveries pending,
and another member of the group (or its own restart) reclaims them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import psycopg
from google.protobuf.message import DecodeError

from ingest.bus import BusConsumer, Delivery
from ingest.envelope import decode_envelope
from ingest.errors import BusUnavailable
from storage.errors import DatabaseUnavailable, SampleWriteRejected
from storage.samples import SampleBatch, SampleWriter, WriteResult

log = logging.getLogger(__name__)


class SeriesAdmission(Protocol):
    """Decides which series of a batch may be stored (cardinality enforcement's hook)."""

    def admit(self, batches: Sequence[SampleBatch]) -> list[SampleBatch]:
        """The batches with only the admitted series left in them."""
        ...


class AdmitAll:
    """The admission used until cardinality limits are configured: every series passes."""

    def admit(self, batches: Sequence[SampleBatch]) -> list[SampleBatch]:
        """All batches, unchanged."""
        return list(batches)


@dataclass
class WriterStats:
    """What a writer has done since it started."""

    envelopes: int = 0
    samples: int = 0
    duplicates: int = 0
    poison: int = 0
    db_retries: int = 0
    lag_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Writer:
    """One consumer's loop: receive, decode, admit, write, acknowledge."""

    def __init__(
        self,
        consumer: BusConsumer,
        connect: Callable[[], psycopg.Connection],
        sample_writer: SampleWriter,
        admission: SeriesAdmission | None = None,
        max_envelopes: int = 256,
        receive_timeout_s: float = 1.0,
        max_backoff_s: float = 5.0,
        stats: WriterStats | None = None,
    ) -> None:
        self._consumer = consumer
        self._connect = connect
        self._sample_writer = sample_writer
        self._admission = admission or AdmitAll()
        self._max_envelopes = max_envelopes
        self._receive_timeout_s = receive_timeout_s
        self._max_backoff_s = max_backoff_s
        self.stats = stats or WriterStats()
        self._conn: psycopg.Connection | None = None

    def run(self, stop: threading.Event) -> None:
        """Write until `stop` is set; the batch in hand is finished first."""
        try:
            while not stop.is_set():
                try:
                    deliveries = self._consumer.receive(
                        self._max_envelopes, self._receive_timeout_s
                    )
                except BusUnavailable as exc:
                    log.warning("%s; retrying", exc)
                    stop.wait(exc.retry_after_s)
                    continue
                if deliveries:
                    self._store(deliveries, stop)
        finally:
            if self._conn is not None:
                self._conn.close()
            self._consumer.close()

    def _store(self, deliveries: Sequence[Delivery], stop: threading.Event) -> None:
        batches: list[SampleBatch] = []
        oldest_accept_us = None
        for delivery in deliveries:
            try:
                batch, accepted_at_us = decode_envelope(delivery.payload)
            except (DecodeError, ValueError) as exc:
                # Unreadable forever: keeping it would block its partition for good.
                log.error(
                    "dropping an undecodable envelope on partition %s: %s", delivery.partition, exc
                )
                with self.stats.lock:
                    self.stats.poison += 1
                continue
            batches.append(batch)
            oldest_accept_us = min(oldest_accept_us or accepted_at_us, accepted_at_us)
        admitted = self._admission.admit(batches)
        backoff_s = 0.1
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                results = self._write(self._conn, admitted)
                break
            except DatabaseUnavailable as exc:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                with self.stats.lock:
                    self.stats.db_retries += 1
                log.warning("%s; retrying in %.1fs", exc, backoff_s)
                if stop.wait(backoff_s):
                    return  # unacknowledged: the bus redelivers them
                backoff_s = min(backoff_s * 2, self._max_backoff_s)
        self._acknowledge(deliveries, stop)
        with self.stats.lock:
            self.stats.envelopes += len(deliveries)
            self.stats.samples += sum(r.samples for r in results if not r.duplicate)
            self.stats.duplicates += sum(1 for r in results if r.duplicate)
            if oldest_accept_us is not None:
                self.stats.lag_s = time.time() - oldest_accept_us / 1e6

    def _write(self, conn: psycopg.Connection, batches: list[SampleBatch]) -> list[WriteResult]:
        """Write the batches together; if the database refuses them, one at a time, and
        set aside (log, count, acknowledge) any batch it refuses on its own, so one bad
        envelope never blocks its partition."""
        try:
            return self._sample_writer.write_many(conn, batches)
        except SampleWriteRejected as exc:
            if len(batches) == 1:
                log.error(
                    "dropping envelope %s of tenant %s: %s",
                    batches[0].key,
                    batches[0].tenant_id,
                    exc,
                )
                with self.stats.lock:
                    self.stats.poison += 1
                return [WriteResult(samples=0, duplicate=False)]
            return [result for batch in batches for result in self._write(conn, [batch])]

    def _acknowledge(self, deliveries: Sequence[Delivery], stop: threading.Event) -> None:
        while True:
            try:
                self._consumer.ack(deliveries)
                return
            except BusUnavailable as exc:
                # Committed but not acknowledged: a redelivery would be a ledger duplicate.
                log.warning("%s; acknowledgement retried", exc)
                if stop.wait(1.0):
                    return
