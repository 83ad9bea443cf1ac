"""The storage layer's named SQL queries, loaded once from the `*.sql` files beside this
module (queries.sql, rollups.sql, …); names are unique across files."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_HEADER = re.compile(r"^-- (\w+) --\n", re.MULTILINE)


@cache
def _all() -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(Path(__file__).parent.glob("*.sql")):
        parts = _HEADER.split(path.read_text())
        # parts = [preamble, name1, body1, name2, body2, ...]
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice ({path.name})")
            lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
            queries[name] = "\n".join(lines).rstrip().rstrip(";")
    return queries


def query(name: str) -> str:
    """The SQL text of the named query."""
    return _all()[name]
