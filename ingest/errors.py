"""Typed ingestion errors; `api/` maps each to its HTTP status."""

from __future__ import annotations


class IngestError(Exception):
    """Root of every error the ingestion path raises on purpose."""

    code = "ingest_error"


class MalformedBatch(IngestError):
    """The body cannot be decoded into a batch at all."""

    code = "malformed_body"


class UnsupportedMediaType(IngestError):
    """The body's content type or content encoding is not one Vigil reads."""

    code = "unsupported_media_type"


class BatchTooLarge(IngestError):
    """The body or its decoded batch exceeds a configured size limit."""

    code = "batch_too_large"


class RetryLater(IngestError):
    """A transient refusal; the client should retry after `retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(RetryLater):
    """The API key exceeded its request or sample rate."""

    code = "rate_limited"


class BacklogFull(RetryLater):
    """The bus holds more unwritten data than its configured bound."""

    code = "backlog_full"


class BusUnavailable(RetryLater):
    """The bus could not durably take the batch."""

    code = "bus_unavailable"
