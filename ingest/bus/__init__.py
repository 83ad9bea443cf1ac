"""The bus between the API and the writers: one small interface, two implementations.

A publisher appends encoded envelopes to numbered partitions and returns only once they
are durable. A consumer, one of a named group, receives deliveries and acknowledges
them after the database commit; deliveries a dead consumer left unacknowledged are
delivered again (to this or another consumer of the group), so every envelope is
written at least once and the write ledger makes it exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Delivery:
    """One received envelope; `handle` is what its bus needs to acknowledge it."""

    partition: int
    payload: bytes
    handle: object


class BusPublisher(Protocol):
    """Appends envelopes to partitions of the bus."""

    @property
    def partitions(self) -> int:
        """How many partitions envelopes are spread over."""
        ...

    def publish(self, messages: Sequence[tuple[int, bytes]]) -> None:
        """Append (partition, payload) pairs; returns once all are durable.

        Raises `ingest.errors.BusUnavailable` when the bus cannot take them.
        """
        ...

    def backlog(self) -> int:
        """Envelopes published but not yet acknowledged by the writers."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class BusConsumer(Protocol):
    """One member of the writers' consumer group."""

    def receive(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        """Up to `max_messages` deliveries, waiting at most `timeout_s` for the first.

        Includes deliveries reclaimed from members that stopped without acknowledging.
        Raises `ingest.errors.BusUnavailable` when the bus cannot be reached.
        """
        ...

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge deliveries whose contents are committed to the database."""
        ...

    def close(self) -> None:
        """Leave the group and release connections; unacknowledged deliveries are redelivered."""
        ...
