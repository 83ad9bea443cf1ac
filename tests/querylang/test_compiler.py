"""querylang.compiler: the fixture pairs of compiler_fixtures.sql.

Each pair is a selector, prefixed by the compile function it goes through (for a fixed
tenant, grid and bounds, see `compile_fixture`), and the statement it compiles to: its
SQL as sqlglot pretty-prints it (which parses back to exactly the SQL that runs), then
its bind parameters. Regex matchers are first resolved to value sets, as
DatabaseSource resolves them (querylang/matcher_values.py), against the small catalog
in CATALOG.

`VIGIL_REGENERATE_FIXTURES=1` rewrites the expected side of every pair from what the
compiler answers now (inputs and comments stay); review the diff before committing it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from querylang import ast
from querylang.compiler import (
    CatalogMatcher,
    Statement,
    compile_instant,
    compile_label_names,
    compile_label_values,
    compile_matcher_values,
    compile_range,
    compile_rollup,
    compile_series,
    compile_series_count,
)
from querylang.limits import QueryLimits
from querylang.matcher_values import MatcherResolver
from querylang.parser import parse
from querylang.timegrid import TimeGrid

FIXTURES = Path(__file__).with_name("compiler_fixtures.sql")
REGENERATE = os.environ.get("VIGIL_REGENERATE_FIXTURES") == "1"

TENANT = "00000000-0000-4000-8000-00000000000a"
START_US = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
STEP_US = 60_000_000
GRID = TimeGrid(START_US, STEP_US, 61)
"""An hour at one-minute steps."""
LOOKBACK_US = 5 * 60_000_000
MAX_SERIES = 10_001
CATALOG: dict[str, list[str]] = {
    "__name__": ["http_requests_total", "node_cpu_seconds_total", "up"],
    "job": ["api", "db", "web"],
    "path": ["/health", "/v1/orders", "/v1/users", "/v2/users"],
    "env": ["dev", "prod"],
}
"""The label values regex matchers are resolved against (every series of the tenant)."""

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_INPUT = re.compile(r"^(?P<kind>\w+)(?:\((?P<args>[^)]*)\))?\s+(?P<selector>.+);$")


def _duration(text: str) -> int:
    found = _DURATION.match(text.strip())
    if found is None:
        raise ValueError(f"not a duration: {text!r}")
    return int(found.group(1)) * _UNITS_US[found.group(2)]


def _catalog_rows(statement: Statement) -> list[tuple[Any, ...]]:
    """A catalog statement's rows: every value of the label it asks for."""
    label = statement.params.get("label", "__name__")
    return [(value,) for value in CATALOG.get(label, [])]


def _resolved(selector: str) -> tuple[CatalogMatcher, ...]:
    expr = parse(selector)
    assert isinstance(expr, ast.VectorSelector), f"not a selector: {selector}"
    resolver = MatcherResolver(TENANT, _catalog_rows, QueryLimits(), time.monotonic() + 60)
    return resolver.resolve(expr.matchers)


Compile = Callable[[tuple[CatalogMatcher, ...], Sequence[str]], Statement]

KINDS: dict[str, Compile] = {
    "instant": lambda m, _: compile_instant(TENANT, m, GRID, LOOKBACK_US, MAX_SERIES),
    "instant_at": lambda m, _: compile_instant(
        TENANT, m, TimeGrid(GRID.end_us, 0, 1), LOOKBACK_US, MAX_SERIES
    ),
    "range": lambda m, args: compile_range(TENANT, m, GRID, _duration(args[0]), MAX_SERIES),
    "rollup": lambda m, args: compile_rollup(
        TENANT, m, f"rollups_{args[0]}", tuple(args[1:]), GRID.start_us, GRID.end_us, MAX_SERIES
    ),
    "rollup_view": lambda m, args: compile_rollup(
        TENANT, m, args[0], tuple(args[1:]), GRID.start_us, GRID.end_us, MAX_SERIES
    ),
    "series": lambda m, _: compile_series(TENANT, m, GRID.start_us, GRID.end_us, MAX_SERIES),
    "series_count": lambda m, args: compile_series_count(
        TENANT, m, GRID.start_us, GRID.end_us, int(args[0])
    ),
    "label_names": lambda m, _: compile_label_names(TENANT, m, GRID.start_us, GRID.end_us),
    "label_values": lambda m, args: compile_label_values(
        TENANT, args[0], m, GRID.start_us, GRID.end_us
    ),
    "matcher_values": lambda m, args: compile_matcher_values(TENANT, args[0], m, MAX_SERIES),
}
"""Each fixture kind: `kind(args) selector;` compiles through this function."""


def compile_fixture(text: str) -> Statement:
    """The statement a fixture's input line compiles to (ValueError: not an input)."""
    found = _INPUT.match(text)
    if found is None or found.group("kind") not in KINDS:
        raise ValueError(f"expected `<kind>[(args)] <selector>;` with a kind of {list(KINDS)}")
    args = [arg.strip() for arg in (found.group("args") or "").split(",") if arg.strip()]
    return KINDS[found.group("kind")](_resolved(found.group("selector")), args)


# ---------------------------------------------------------------------------------
# The fixture file


@dataclass
class Fixture:
    """One pair: comment lines before it, the input, and the expected side (pretty
    SQL, or `!! ErrorType: message`) with its bind parameters as `name = value` lines."""

    comments: list[str]
    input: str
    expected: str
    params: list[str]
    line: int


def read_fixtures(text: str) -> tuple[list[Fixture], list[str]]:
    """The pairs of a fixture file, and the comment lines after the last one."""
    lines = text.splitlines()
    fixtures: list[Fixture] = []
    comments: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip() or line.startswith("#"):
            comments.append(line)
            index += 1
            continue
        number = index + 1
        if not line.rstrip().endswith(";"):
            raise ValueError(f"{FIXTURES.name}:{number}: an input is one line ending in ';'")
        index += 1
        expected: list[str] = []
        while index < len(lines) and lines[index].strip() and not lines[index].startswith("--"):
            expected.append(lines[index])
            index += 1
            if expected[-1].startswith("!!") or expected[-1].rstrip().endswith(";"):
                break
        params = []
        while index < len(lines) and lines[index].startswith("-- "):
            params.append(lines[index][3:])
            index += 1
        text_expected = "\n".join(expected)
        if text_expected.endswith(";"):
            text_expected = text_expected[:-1]
        fixtures.append(Fixture(_trimmed(comments), line.rstrip(), text_expected, params, number))
        comments = []
    return fixtures, comments


def _trimmed(comments: list[str]) -> list[str]:
    """Comment lines without the blank lines around them."""
    while comments and not comments[0].strip():
        comments = comments[1:]
    while comments and not comments[-1].strip():
        comments = comments[:-1]
    return comments


def render_fixtures(fixtures: Sequence[Fixture], trailer: Sequence[str]) -> str:
    blocks = []
    for fixture in fixtures:
        expected = fixture.expected if fixture.expected.startswith("!!") else fixture.expected + ";"
        lines = [*fixture.comments, fixture.input, expected, *(f"-- {p}" for p in fixture.params)]
        blocks.append("\n".join(lines))
    tail = "\n".join(_trimmed(list(trailer)))
    return "\n\n".join(blocks) + "\n" + (f"\n{tail}\n" if tail else "")


def _pretty(sql: str) -> str:
    return sqlglot.transpile(sql, read="postgres", write="postgres", pretty=True)[0]


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"interval '{value.total_seconds():g} seconds'"
    return repr(value)


def actual(fixture_input: str) -> tuple[str, list[str]]:
    """What an input compiles to now: (pretty SQL or `!! Error: message`, params)."""
    try:
        statement = compile_fixture(fixture_input)
    except (ValueError, TypeError) as exc:
        return f"!! {type(exc).__name__}: {exc}", []
    params = [f"{name} = {_show(value)}" for name, value in sorted(statement.params.items())]
    return _pretty(statement.sql), params


def _load() -> list[Fixture]:
    fixtures, trailer = read_fixtures(FIXTURES.read_text(encoding="utf-8"))
    if REGENERATE:
        for fixture in fixtures:
            fixture.expected, fixture.params = actual(fixture.input)
        FIXTURES.write_text(render_fixtures(fixtures, trailer), encoding="utf-8")
    return fixtures


FIXTURE_CASES = _load()


@pytest.mark.parametrize(
    "fixture", [pytest.param(f, id=f"line {f.line}: {f.input[:-1]}") for f in FIXTURE_CASES]
)
def test_selector_compiles_to_its_fixture(fixture: Fixture) -> None:
    expected, params = actual(fixture.input)
    assert expected == fixture.expected, "rerun with VIGIL_REGENERATE_FIXTURES=1 if intended"
    assert params == fixture.params
    if not expected.startswith("!!"):
        # The pretty form is what runs, only laid out: the same tree as the SQL sent.
        sent = compile_fixture(fixture.input).sql
        assert _tree(expected) == _tree(sent)


def _tree(sql: str) -> str:
    return sqlglot.parse_one(sql, read="postgres").sql(dialect="postgres")


def test_fixture_file_round_trips() -> None:
    """Reading and rendering the file changes nothing, so regeneration only ever
    rewrites expected sides."""
    text = FIXTURES.read_text(encoding="utf-8")
    assert render_fixtures(*read_fixtures(text)) == text


def test_every_compile_function_has_fixtures() -> None:
    kinds = {f.input.split("(")[0].split()[0] for f in FIXTURE_CASES}
    assert kinds == set(KINDS)
