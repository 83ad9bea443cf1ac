"""Times and durations as query parameters spell them (Prometheus's API and the CLI)."""

from __future__ import annotations

import math
import re
from datetime import datetime

from querylang.errors import BadRequest

_UNITS_US = {
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
    "y": 31_536_000_000_000,
}
_DURATION = re.compile(r"(?:(\d+)(ms|s|m|h|d|w|y))+")
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_MIN_TIME_S = -9_223_372_036.854775  # Prometheus's MinTime / MaxTime, in seconds
_MAX_TIME_S = 9_223_372_036.854775


def parse_duration(text: str, name: str = "duration") -> int:
    """`15`, `0.5` (seconds) or `1h30m` (Prometheus units) as microseconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        if not _DURATION.fullmatch(text):
            raise BadRequest(
                f'invalid parameter "{name}": cannot parse "{text}" to a valid duration'
            ) from None
        return sum(int(n) * _UNITS_US[unit] for n, unit in _PART.findall(text))
    if not math.isfinite(seconds) or abs(seconds) > _MAX_TIME_S:
        raise BadRequest(f'invalid parameter "{name}": cannot parse "{text}" to a valid duration')
    return round(seconds * 1_000_000)


def parse_time(text: str, now_us: int, name: str = "time") -> int:
    """A Unix time in seconds, RFC 3339, `now`, or relative to now (`-1h`, `now-1h`)."""
    text = text.strip()
    if text == "now":
        return now_us
    relative = text[3:] if text.startswith("now") else text
    if relative and relative[0] in "+-" and not _is_number(relative):
        sign = -1 if relative[0] == "-" else 1
        return now_us + sign * parse_duration(relative[1:], name)
    if _is_number(text):
        seconds = float(text)
        if not math.isfinite(seconds) or not _MIN_TIME_S <= seconds <= _MAX_TIME_S:
            raise BadRequest(
                f'invalid parameter "{name}": cannot parse "{text}" to a valid timestamp'
            )
        return round(seconds * 1_000_000)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f'invalid parameter "{name}": cannot parse "{text}" to a valid timestamp'
        ) from None
    if parsed.tzinfo is None:
        raise BadRequest(f'invalid parameter "{name}": "{text}" has no time zone (RFC 3339)')
    return round(parsed.timestamp() * 1_000_000)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
