"""Sample times: integer Unix microseconds in Vigil, timestamptz in PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_datetime(unix_us: int) -> datetime:
    """The UTC datetime of a Unix-microsecond time."""
    return UNIX_EPOCH + timedelta(microseconds=unix_us)


def to_unix_us(moment: datetime) -> int:
    """The Unix-microsecond time of an aware datetime."""
    return (moment - UNIX_EPOCH) // _MICROSECOND
