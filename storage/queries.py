"""The storage layer's named SQL queries, loaded once from queries.sql."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_HEADER = re.compile(r"^-- (\w+) --\n", re.MULTILINE)


@cache
def _all() -> dict[str, str]:
    text = (Path(__file__).parent / "queries.sql").read_text()
    parts = _HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        queries[name] = "\n".join(lines).rstrip().rstrip(";")
    return queries


def query(name: str) -> str:
    """The SQL text of the named query."""
    return _all()[name]
