"""The agent: collect every interval, buffer on disk, deliver oldest first, retry politely.

Delivery rules: 202 removes the batch (its `sample_too_old` rejections are counted as
dropped, never retried); 429, 503, other 5xx and network errors keep it and back off
exponentially with full jitter, never sooner than the server's Retry-After; any
other 4xx drops it, since sending it again cannot succeed. A retry reuses the batch's
id, so a batch the server accepted but whose answer was lost is stored once.
"""

from __future__ import annotations

import gzip
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from agentsim.buffer import BufferedBatch, DiskBuffer
from agentsim.host import Host
from ingest.wire import ingest_pb2

log = logging.getLogger(__name__)

INGEST_PATH = "/v1/metrics/ingest"
RETRYABLE = frozenset({429, 502, 503, 504})


@dataclass
class AgentStats:
    """What an agent has done; `buffered` is filled in from its buffer when reported."""

    collected: int = 0
    accepted: int = 0
    rejected: int = 0
    dropped_too_old: int = 0
    dropped_rejected: int = 0
    dropped_overflow: int = 0
    buffered: int = 0
    requests: int = 0
    retries: int = 0

    def add(self, other: AgentStats) -> None:
        """Accumulate another agent's figures into these."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""

    base_s: float = 1.0
    cap_s: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first)."""
        return rng.uniform(0, min(self.cap_s, self.base_s * 2**attempt))


DEFAULT_BACKOFF = Backoff()


class Agent:
    """One host's agent, sending to one Vigil API with one API key."""

    def __init__(
        self,
        host: Host,
        buffer: DiskBuffer,
        client: httpx.AsyncClient,
        api_key: str,
        rng: random.Random,
        backoff: Backoff = DEFAULT_BACKOFF,
        compress: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.buffer = buffer
        self._client = client
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/x-protobuf",
        }
        if compress:
            self._headers["Content-Encoding"] = "gzip"
        self._compress = compress
        self._rng = rng
        self._backoff = backoff
        self._monotonic = monotonic
        self._attempt = 0
        self.retry_at = 0.0
        self.stats = AgentStats()

    def collect(self, now: float) -> None:
        """Measure the host at `now` (Unix seconds) and buffer the batch."""
        batch = ingest_pb2.MetricBatch(batch_id=uuid.uuid4().hex)
        samples = self.host.collect(now)
        for sample in samples:
            batch.metrics.add(
                name=sample.name,
                labels=sample.labels,
                value=sample.value,
                timestamp=sample.timestamp,
            )
        payload = batch.SerializeToString()
        if self._compress:
            payload = gzip.compress(payload, compresslevel=1)
        self.buffer.push(batch.batch_id, len(samples), payload)
        self.stats.collected += len(samples)

    async def deliver(self) -> None:
        """Send buffered batches oldest first until the buffer is empty or a send fails."""
        while (batch := self.buffer.oldest()) is not None:
            if self._monotonic() < self.retry_at:
                return
            if not await self._send(batch):
                return

    async def _send(self, batch: BufferedBatch) -> bool:
        """True when the batch is settled (delivered or dropped), False to retry later."""
        self.stats.requests += 1
        try:
            response = await self._client.post(
                INGEST_PATH, content=batch.payload, headers=self._headers
            )
        except httpx.HTTPError as exc:
            self._retry_later(None, f"{type(exc).__name__}: {exc}")
            return False
        status = response.status_code
        if status == 202:
            result = response.json()
            too_old = result.get("rejected_by_code", {}).get("sample_too_old", 0)
            self.stats.accepted += result["accepted"]
            self.stats.rejected += result["rejected"]
            self.stats.dropped_too_old += too_old
            self._settle(batch)
            return True
        if status in RETRYABLE or status >= 500:
            self._retry_later(_retry_after(response), f"HTTP {status}")
            return False
        # Any other 4xx: this batch can never succeed; resending it would only add load.
        log.warning(
            "%s: batch %s dropped: HTTP %s %s",
            self.host.name,
            batch.batch_id,
            status,
            response.text[:200],
        )
        self.stats.dropped_rejected += batch.samples
        self._settle(batch)
        return True

    def _settle(self, batch: BufferedBatch) -> None:
        self.buffer.remove(batch)
        self._attempt = 0
        self.retry_at = 0.0

    def _retry_later(self, retry_after_s: float | None, reason: str) -> None:
        delay = self._backoff.delay(self._attempt, self._rng)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        self._attempt += 1
        self.stats.retries += 1
        self.retry_at = self._monotonic() + delay
        log.debug("%s: delivery failed (%s); retrying in %.1fs", self.host.name, reason, delay)

    def snapshot(self) -> AgentStats:
        """The agent's figures now, including what its buffer holds and dropped."""
        stats = AgentStats(**{k: getattr(self.stats, k) for k in AgentStats.__dataclass_fields__})
        stats.buffered = self.buffer.samples
        stats.dropped_overflow = self.buffer.dropped_samples
        return stats


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
