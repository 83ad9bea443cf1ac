"""The agent: collect every interval, buffer on disk, deliver oldest first, retry politely.

Delivery rules: 202 removes the batch (its `sample_too_old` rejections are counted as
dropped, never retried); 429, 5xx and network errors keep it and back off
exponentially with full jitter, never sooner than the server's Retry-After; any other
4xx drops it, since sending the same bytes again cannot succeed. A retry reuses the
batch's id, so a batch the server accepted but whose answer was lost is stored once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import logging
import math
import random
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from agentsim.backoff import DEFAULT_BACKOFF, Backoff, retry_after_s
from agentsim.buffer import BufferedBatch, DiskBuffer
from agentsim.clock import SYSTEM_CLOCK, Clock, pause
from agentsim.host import Host
from ingest.wire import ingest_pb2

log = logging.getLogger(__name__)

INGEST_PATH = "/v1/metrics/ingest"
# The one 4xx worth retrying: every other says resending the same batch cannot succeed.
RETRYABLE_4XX = frozenset({429})
TOO_OLD = "sample_too_old"
_GZIP_MAGIC = b"\x1f\x8b"
# Shortest wait between delivery attempts, so a clock quirk can never make a busy loop.
_MIN_WAIT_S = 0.05


@dataclass
class AgentStats:
    """Sample counts of what an agent did; `buffered` and `dropped_overflow` come from its buffer.

    Once the buffer is empty, collected = accepted + rejected + dropped_rejected +
    dropped_overflow; dropped_too_old is the part of `rejected` refused as too old.
    """

    collected: int = 0
    sent: int = 0  # samples in every request made, retries included
    accepted: int = 0
    rejected: int = 0
    dropped_too_old: int = 0
    dropped_rejected: int = 0  # whole batches refused with a non-retryable 4xx
    dropped_overflow: int = 0
    buffered: int = 0
    requests: int = 0
    retries: int = 0

    @property
    def dropped(self) -> int:
        """Samples that will never be stored: too old, refused batches, buffer overflow."""
        return self.dropped_too_old + self.dropped_rejected + self.dropped_overflow

    def add(self, other: AgentStats) -> None:
        """Accumulate another agent's figures into these."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


class Agent:
    """One host's agent, sending to one Vigil API (the client's base URL) with one API key."""

    def __init__(
        self,
        host: Host,
        buffer: DiskBuffer,
        client: httpx.AsyncClient,
        api_key: str,
        rng: random.Random,
        backoff: Backoff = DEFAULT_BACKOFF,
        compress: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.host = host
        self.buffer = buffer
        self._client = client
        self._api_key = api_key
        self._compress = compress
        self._rng = rng
        self._backoff = backoff
        self._clock = clock
        self._attempt = 0
        self._reported: set[tuple[int, str]] = set()
        self.retry_at = 0.0
        self.stats = AgentStats()

    def collect(self, now: float) -> str:
        """Measure the host at `now` (Unix seconds), buffer the batch and return its id."""
        # Random ids, not ones derived from seed and sequence: a restarted simulation with
        # the same seed would repeat those, and the server would drop new data as duplicates.
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
        return batch.batch_id

    async def deliver(self) -> None:
        """Send buffered batches oldest first until the buffer is empty or a send fails."""
        while self._clock.monotonic() >= self.retry_at:
            batch = self.buffer.peek_oldest()
            if batch is None or not await self._send(batch):
                return

    async def flush(self) -> None:
        """Try once more to deliver everything now, whatever the backoff says (at shutdown)."""
        self.retry_at = 0.0
        await self.deliver()

    async def run(
        self,
        interval_s: float,
        *,
        start_in_s: float = 0.0,
        until: float | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Collect every `interval_s` and deliver, until monotonic time `until` or `stop`."""
        stop = stop or asyncio.Event()
        clock = self._clock
        next_collect = clock.monotonic() + start_in_s
        while not stop.is_set():
            now = clock.monotonic()
            if until is not None and now >= until:
                break
            if now >= next_collect:
                self.collect(clock.time())
                # After a late wake-up, skip the missed intervals rather than burst them.
                next_collect += interval_s * (math.floor((now - next_collect) / interval_s) + 1)
            await self.deliver()
            wake = next_collect
            if len(self.buffer):
                wake = min(wake, max(self.retry_at, clock.monotonic() + _MIN_WAIT_S))
            if until is not None:
                wake = min(wake, until)
            await pause(clock, wake - clock.monotonic(), stop)

    def snapshot(self) -> AgentStats:
        """The agent's figures now, including what its buffer holds and dropped."""
        return dataclasses.replace(
            self.stats,
            buffered=self.buffer.samples,
            dropped_overflow=self.buffer.dropped_samples,
        )

    async def _send(self, batch: BufferedBatch) -> bool:
        """True when the batch is settled (delivered or dropped), False to retry later."""
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/x-protobuf",
        }
        # Decided per batch, not per agent: the buffer may hold batches written by a run
        # with the other setting. A protobuf MetricBatch never starts with 0x1f (field 3,
        # wire type 7 does not exist), so the gzip magic cannot be mistaken.
        if batch.payload.startswith(_GZIP_MAGIC):
            headers["Content-Encoding"] = "gzip"
        self.stats.requests += 1
        self.stats.sent += batch.samples
        try:
            response = await self._client.post(INGEST_PATH, content=batch.payload, headers=headers)
        except httpx.HTTPError as exc:
            self._retry_later(None, f"{type(exc).__name__}: {exc}")
            return False
        status = response.status_code
        if status == 202:
            self._count_delivered(batch, response)
            self._settle(batch)
            return True
        if status in RETRYABLE_4XX or status >= 500:
            self._retry_later(retry_after_s(response), f"HTTP {status}")
            return False
        # Any other answer (a 4xx, or a 2xx/3xx this agent does not expect): the same
        # bytes can never succeed, and resending them would only add load.
        code = _error_code(response)
        level = logging.DEBUG if (status, code) in self._reported else logging.WARNING
        self._reported.add((status, code))
        log.log(
            level, "%s: batch %s dropped: HTTP %s %s", self.host.name, batch.batch_id, status, code
        )
        self.stats.dropped_rejected += batch.samples
        self._settle(batch)
        return True

    def _count_delivered(self, batch: BufferedBatch, response: httpx.Response) -> None:
        try:
            result = response.json()
            accepted, rejected = int(result["accepted"]), int(result["rejected"])
        except (ValueError, KeyError, TypeError):
            # The server took the batch (202) but its answer is unreadable: resending would
            # duplicate nothing (same id) but gain nothing either, so count it as accepted.
            log.warning("%s: unreadable 202 body for batch %s", self.host.name, batch.batch_id)
            self.stats.accepted += batch.samples
            return
        self.stats.accepted += accepted
        self.stats.rejected += rejected
        self.stats.dropped_too_old += _too_old(result)

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
        self.retry_at = self._clock.monotonic() + delay
        log.debug("%s: delivery failed (%s); retrying in %.2fs", self.host.name, reason, delay)


def _too_old(result: dict[str, Any]) -> int:
    """Samples of a 202 refused as too old: exact from `rejected_by_code` when given.

    The `rejections` list may be truncated, so counting it is only a fallback.
    """
    by_code = result.get("rejected_by_code")
    if isinstance(by_code, dict):
        return int(by_code.get(TOO_OLD, 0))
    rejections = result.get("rejections") or []
    return sum(1 for r in rejections if isinstance(r, dict) and r.get("code") == TOO_OLD)


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "unknown"
