"""Intake: a decoded request becomes validated envelopes on the bus, or a typed refusal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ingest.bus import BusPublisher
from ingest.decoding import DecodedBatch
from ingest.envelope import encode_envelopes, request_key
from ingest.errors import BacklogFull, BatchTooLarge, RateLimited
from ingest.rate_limit import RateLimiter
from ingest.validation import Rejection, SeriesRules, validate
from storage.tenants import Tenant

# Suggested wait when the bus backlog is over its bound: long enough for writers to
# drain a good share of it, short enough that agents' buffers stay small.
BACKLOG_RETRY_AFTER_S = 5.0


@dataclass(frozen=True)
class IntakeResult:
    """What became of a request's samples: accepted ones are durably on the bus."""

    accepted: int
    rejections: list[Rejection]


class Intake:
    """Checks limits, validates, and publishes one request's samples."""

    def __init__(
        self,
        publisher: BusPublisher,
        rules: SeriesRules,
        rate_limiter: RateLimiter,
        max_batch_samples: int,
        max_backlog: int,
    ) -> None:
        self._publisher = publisher
        self._rules = rules
        self._rate_limiter = rate_limiter
        self._max_batch_samples = max_batch_samples
        self._max_backlog = max_backlog

    def accept(self, tenant: Tenant, key_id: str, batch: DecodedBatch, now_us: int) -> IntakeResult:
        """Publish the batch's valid samples; raises a `RetryLater` or `BatchTooLarge`."""
        if batch.samples > self._max_batch_samples:
            raise BatchTooLarge(
                f"batch has {batch.samples} samples; at most {self._max_batch_samples} allowed"
            )
        if batch.samples > self._rate_limiter.limits.sample_burst:
            raise BatchTooLarge(
                f"batch has {batch.samples} samples, more than this key's burst of "
                f"{self._rate_limiter.limits.sample_burst:.0f}; send smaller batches"
            )
        backlog = self._publisher.backlog()
        if backlog > self._max_backlog:
            raise BacklogFull(
                f"the bus holds {backlog} unwritten envelopes (bound {self._max_backlog}); "
                "writers are behind",
                BACKLOG_RETRY_AFTER_S,
            )
        wait_s = self._rate_limiter.wait_s(key_id, batch.samples)
        if wait_s > 0:
            raise RateLimited(f"API key {key_id} is over its rate limit", wait_s)
        window_us = tenant.out_of_order_window // timedelta(microseconds=1)
        validated = validate(batch, self._rules, now_us, window_us)
        envelopes = encode_envelopes(
            tenant.id,
            request_key(batch.batch_id, batch.digest),
            validated,
            self._publisher.partitions,
            now_us,
        )
        self._publisher.publish(envelopes)
        return IntakeResult(accepted=validated.accepted, rejections=validated.rejections)
