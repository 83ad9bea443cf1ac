"""PromQL regexes (RE2 syntax, fully anchored) for Python and for PostgreSQL.

Prometheus anchors a matcher's regex as `^(?:re)$`. RE2 lets `(?i)` and other
flag groups stand anywhere; Python and PostgreSQL's AREs want leading flags at the
very start, so a leading flag group moves in front of the anchors.
"""

from __future__ import annotations

import re

_LEADING_FLAGS = re.compile(r"^\(\?([imsU]+)\)")


def _split(pattern: str) -> tuple[str, str]:
    flags = _LEADING_FLAGS.match(pattern)
    if flags is None:
        return "", pattern
    return flags.group(1), pattern[flags.end() :]


def anchored(pattern: str) -> re.Pattern[str]:
    """The pattern as Python compiles it, matching whole strings only
    (`.` matches newlines too only with the `s` flag, as in RE2)."""
    flags, body = _split(pattern)
    prefix = f"(?{flags.replace('U', '')})" if flags.replace("U", "") else ""
    return re.compile(f"{prefix}^(?:{body})$")


def anchored_for_postgres(pattern: str) -> str:
    """The pattern as a fully anchored PostgreSQL ARE."""
    flags, body = _split(pattern)
    prefix = f"(?{flags.replace('U', '')})" if flags.replace("U", "") else ""
    return f"{prefix}^(?:{body})$"
