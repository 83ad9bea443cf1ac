"""Durations as people write them in Prometheus and Grafana: 90s, 15m, 2h, 1d12h (retention
windows, out-of-order windows and every duration setting)."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}


def parse_duration(text: str) -> timedelta:
    """The timedelta of a duration like 90m, 2h or 1d12h; ValueError for anything else."""
    if not text or _PART.sub("", text):
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d12h")
    try:
        return sum((int(n) * _UNITS[unit] for n, unit in _PART.findall(text)), timedelta())
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None


def format_duration(value: timedelta) -> str:
    """The shortest duration text for a timedelta, e.g. 2h or 1d12h."""
    remaining = value
    parts = []
    for unit, size in _UNITS.items():
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
