"""Durations as people type them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1w", timedelta(weeks=1)),
        ("250ms", timedelta(milliseconds=250)),
    ],
)
def test_parse(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "2h ", "-1h", "1.5h", "99999999999w"])
def test_parse_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration|too long"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=2), "2h"),
        (timedelta(days=1, hours=12), "1d12h"),
        (timedelta(weeks=2, seconds=1), "2w1s"),
        (timedelta(0), "0s"),
    ],
)
def test_format(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value
