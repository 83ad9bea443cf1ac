"""Regex matchers resolved against the tenant's catalog: the label values each matches.

Prometheus tests a regex matcher against the values of its label in the postings index,
with Go's regexp. Vigil does the same before a selector's statement runs: for each
`=~`/`!~` matcher one catalog statement (`compiler.compile_matcher_values`) fetches the
label's distinct values among the tenant's series that the selector's other matchers
select, RE2 (querylang/regex.py) tests them, and the matcher becomes a
`ValueSetMatcher`, compiled as `coalesce(label, '') = ANY(values)` (negated for `!~`;
"" is in the set when the regex matches "", so series without the label match too).
PostgreSQL never evaluates a PromQL regex: its AREs are not RE2 (see regex.py).

- A regex that is an alternation of literals (`a|b`, `(a|b)`, as Grafana writes
  multi-value variables) is its own value set: no statement.
- `__name__` is resolved first, then the others as written; each resolved matcher
  narrows the candidates of the next (and an empty `=~` set ends the work: the
  selector selects nothing).
- Bounds: a matcher tests at most `max_values` candidates (the series limit: past it,
  QueryLimitExceeded; the selection itself usually exceeds the limit then), and
  matching stops at the query's deadline (QueryTimeout).
- The candidates and the selection are two statements: a series first written between
  them with a value no series had is judged as a non-matching value (left out by `=~`,
  kept by `!~`), as if the query had run when its candidates were read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from querylang import ast
from querylang.compiler import CatalogMatcher, Statement, ValueSetMatcher, compile_matcher_values
from querylang.errors import QueryLimitExceeded, QueryTimeout
from querylang.limits import QueryLimits
from querylang.printer import to_promql
from querylang.regex import Regex, matcher_regex

Read = Callable[[Statement], Sequence[tuple[Any, ...]]]
"""Runs one catalog statement and returns its rows (the caller's connection, timeout
and explanation)."""

Resolve = Callable[[tuple[ast.Matcher, ...]], tuple[CatalogMatcher, ...]]
"""A selector's matchers with its regex matchers resolved (`MatcherResolver.resolve`)."""

_REGEX_OPS = (ast.MatchOp.RE, ast.MatchOp.NRE)
_CHUNK = 10_000
"""Values matched between two deadline checks (about 25 ms)."""


class MatcherResolver:
    """Resolves the regex matchers of one query's selectors against one tenant's
    catalog, each distinct selector once."""

    def __init__(
        self,
        tenant_id: str,
        read: Read,
        limits: QueryLimits,
        deadline: float,
        window: tuple[int, int] | None = None,
    ) -> None:
        """`deadline` is a `time.monotonic()` time; `window` (start, end µs) limits the
        candidates to series seen in it (the metadata endpoints)."""
        self._tenant_id = tenant_id
        self._read = read
        self._limits = limits
        self._deadline = deadline
        self._window = window
        self._resolved: dict[tuple[ast.Matcher, ...], tuple[CatalogMatcher, ...]] = {}

    def resolve(self, matchers: tuple[ast.Matcher, ...]) -> tuple[CatalogMatcher, ...]:
        """`matchers` with every regex matcher replaced by its value set, in place."""
        resolved = self._resolved.get(matchers)
        if resolved is None:
            resolved = self._resolved[matchers] = self._resolve(matchers)
        return resolved

    def _resolve(self, matchers: tuple[ast.Matcher, ...]) -> tuple[CatalogMatcher, ...]:
        regexes = [index for index, m in enumerate(matchers) if m.op in _REGEX_OPS]
        if not regexes:
            return matchers
        known: list[CatalogMatcher] = [m for m in matchers if m.op not in _REGEX_OPS]
        sets: dict[int, ValueSetMatcher] = {}
        selects_nothing = False
        for index in sorted(regexes, key=lambda i: matchers[i].name != "__name__"):
            matcher = matchers[index]
            regex = matcher_regex(matcher.value)
            values: Sequence[str] | None = regex.literals()
            if values is None:
                values = [] if selects_nothing else self._matching(matcher, regex, tuple(known))
            value_set = ValueSetMatcher(
                matcher.name, tuple(sorted(set(values))), matcher.op is ast.MatchOp.NRE
            )
            sets[index] = value_set
            known.append(value_set)
            selects_nothing = selects_nothing or not (value_set.negated or value_set.values)
        return tuple(sets.get(index, m) for index, m in enumerate(matchers))

    def _matching(
        self, matcher: ast.Matcher, regex: Regex, known: tuple[CatalogMatcher, ...]
    ) -> list[str]:
        """The candidate values of the matcher's label that its regex matches."""
        most = self._limits.max_series
        statement = compile_matcher_values(
            self._tenant_id, matcher.name, known, most + 1, self._window
        )
        candidates = [row[0] for row in self._read(statement)]
        if len(candidates) > most:
            raise QueryLimitExceeded(
                f"the regex matcher {to_promql(ast.VectorSelector((matcher,)))} would test "
                f"more than {most} values of {matcher.name}; "
                "narrow the selector with more label matchers"
            )
        matched = []
        for start in range(0, len(candidates), _CHUNK):
            if time.monotonic() > self._deadline:
                raise QueryTimeout(self._limits.timeout_message())
            matched += regex.select(candidates[start : start + _CHUNK])
        if matcher.name != "__name__" and regex.matches(""):
            matched.append("")  # series without the label
        return matched
