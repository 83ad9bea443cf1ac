"""PromQL regexes in RE2's semantics (querylang/regex.py) and regex matchers resolved
against the catalog (querylang/matcher_values.py), down to the database and /api/v1/series.

Every expectation in the tables below was checked against Debian's Prometheus 2.42
(Go 1.19's regexp): matches through `label_replace`, refusals through `{__name__=~…}`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
import pytest

from querylang import ast
from querylang.compiler import (
    Statement,
    ValueSetMatcher,
    compile_instant,
    compile_series,
)
from querylang.engine import QueryEngine
from querylang.errors import ParseError, QueryLimitExceeded, QueryTimeout
from querylang.explanation import Explanation
from querylang.limits import QueryLimits
from querylang.matcher_values import MatcherResolver
from querylang.parser import parse
from querylang.regex import RegexError, anchored, matcher_regex
from querylang.service import QueryService
from querylang.timegrid import TimeGrid
from storage import tenants
from storage.database import Pool
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey

KELVIN = "\u212a"
LONG_S = "\u017f"

# (regex, value, matches): `^(?:regex)$` in Go's regexp.
MATCHES = [
    (".", "\n", False),
    ("(?s).", "\n", True),
    (".*", "a\nb", False),
    ("(?s).*", "a\nb", True),
    ("[^a]", "\n", True),
    (".", "\r", True),
    ("a", "a\n", False),
    ("a$", "a\n", False),
    ("(?m)a$", "a", True),
    ("(?i)ß", "ẞ", True),
    ("(?i)ẞ", "ß", True),
    ("(?i)größe", "GRÖßE", True),
    ("(?i)größe", "GRÖẞE", True),
    ("(?i)größe", "GRÖSSE", False),
    ("(?i)k", KELVIN, True),
    (f"(?i){KELVIN}", "K", True),
    ("(?i)[k-l]", KELVIN, True),
    ("(?i)s", LONG_S, True),
    ("(?i)\u03c3", "\u03c2", True),  # sigma, final sigma
    ("(?i)ǅ", "ǆ", True),
    ("(?i)i", "İ", False),
    ("\\w", "é", False),
    ("\\w", "_", True),
    ("\\pL", "é", True),
    ("\\pL", "1", False),
    ("[[:alpha:]]", "é", False),
    ("[[:alpha:]]", "a", True),
    ("\\d", "٣", False),
    ("\\pN", "٣", True),
    ("\\s", "\u00a0", False),
    ("\\s", "\v", False),
    ("\\b", "", False),
    ("", "", True),
    ("", "a", False),
    ("a{,2}", "a{,2}", True),
    ("\\Qa.b\\E", "a.b", True),
    ("(?U)a+", "aa", True),
]


@pytest.mark.parametrize(("pattern", "value", "expected"), MATCHES)
def test_matchers_have_go_regexp_semantics(pattern: str, value: str, expected: bool) -> None:
    regex = matcher_regex(pattern)
    assert regex.matches(value) is expected
    assert regex.select([value]) == ([value] if expected else [])


# (regex, Go's error after "error parsing regexp: ").
REFUSALS = [
    ("(", "missing closing ): `^(?:()$`"),
    (")", "unexpected ): `^(?:))$`"),
    ("*", "missing argument to repetition operator: `*`"),
    ("a**", "invalid nested repetition operator: `**`"),
    ("[a", "missing closing ]: `[a)$`"),
    ("\\", "missing closing ): `^(?:\\)$`"),
    ("a{1001}", "invalid repeat count: `{1001}`"),
    ("(a{1000}){1000}", "invalid repeat count: `{1000}`"),
    ("\\8", "invalid escape sequence: `\\8`"),
    ("\\Z", "invalid escape sequence: `\\Z`"),
    ("(?z)", "invalid or unsupported Perl syntax: `(?z`"),
    ("(?i-)", "invalid or unsupported Perl syntax: `(?i-)`"),
    ("[z-a]", "invalid character class range: `z-a`"),
    ("\\pX", "invalid character class range: `\\pX`"),
    ("[[:foo:]]", "invalid character class range: `[:foo:]`"),
    ("(?P<>a)", "invalid named capture: `(?P<>`"),
    ("\\x{110000}", "invalid escape sequence: `\\x{110000`"),
    # C++ RE2 accepts these; Go 1.19 does not.
    ("\\C", "invalid escape sequence: `\\C`"),
    ("(?<n>a)", "invalid or unsupported Perl syntax: `(?<`"),
    ("(?P<größe>a)", "invalid named capture: `(?P<größe>`"),
    # Valid once wrapped in ^(?:…)$, but Prometheus also parses the bare pattern.
    ("a)|(b", "unexpected ): `a)|(b`"),
]


@pytest.mark.parametrize(("pattern", "message"), REFUSALS)
def test_refusals_carry_go_messages(pattern: str, message: str) -> None:
    with pytest.raises(RegexError) as caught:
        matcher_regex(pattern)
    assert str(caught.value) == f"error parsing regexp: {message}"
    with pytest.raises(ParseError) as parsed:
        parse(f"x{{a=~{_promql_string(pattern)}}}")
    assert parsed.value.detail.endswith(f"error parsing regexp: {message}")
    assert parsed.value.position == 5


@pytest.mark.parametrize(
    "pattern", ["(?P<n>a)(?P<n>b)", "[]a]", "[^]a]", "\\p{Greek}", "\\0", "[\\d-z]", "(?U)a"]
)
def test_go_accepts_what_re2_accepts(pattern: str) -> None:
    matcher_regex(pattern)


def test_label_replace_compiles_the_concatenation_only() -> None:
    # Go's label_replace compiles "^(?:" + re + ")$" and nothing else: `a)|(b` means
    # "starts with a or ends with b", found by an unanchored search.
    regex = anchored("a)|(b")
    assert [regex.matches(text) for text in ("ax", "xb", "x")] == [True, True, False]
    with pytest.raises(RegexError):
        matcher_regex("a)|(b")


# (regex, text, template, Go's Regexp.ExpandString of the match).
EXPANSIONS = [
    ("(a)(b)?", "a", "$1|$2|${1}x|$1x|$$|$0", "a||ax||$|a"),
    ("(?P<x>a)(b)?-(?P<x>c)", "a-c", "$x|${3}|$01|${x", "a|c||${x"),
    ("(?P<x>a)?-(?P<x>c)", "-c", "$x", "c"),
    ("(.)", "ß", "<$1>$ ${}", "<ß>$ ${}"),
    ("(?s)(.*)\n(.*)", "one\ntwo", "$2-$1", "two-one"),
    ("(a)", "a", "$999999999|$1000000000", "|"),
]


@pytest.mark.parametrize(("pattern", "text", "template", "expanded"), EXPANSIONS)
def test_templates_expand_as_go_does(pattern: str, text: str, template: str, expanded: str) -> None:
    regex = anchored(pattern)
    match = regex.match(text)
    assert match is not None
    assert regex.expand(template, match) == expanded


@pytest.mark.parametrize(
    ("pattern", "literals"),
    [
        ("a|b|a", ("a", "b")),
        ("(api|web)", ("api", "web")),
        ("(?:api\\.v1|)", ("api.v1", "")),
        ("größe|line\nbreak", ("größe", "line\nbreak")),
        ("a.b", None),
        ("(?i)a", None),
        ("(a)|(b)", None),
        ("a\\d", None),
        ("a{2}", None),
    ],
)
def test_literal_alternations_are_their_own_value_set(
    pattern: str, literals: tuple[str, ...] | None
) -> None:
    assert matcher_regex(pattern).literals() == literals


class _Catalog:
    """A fake catalog read: answers a values statement with `values[label]`, recording it."""

    def __init__(self, **values: Sequence[str]) -> None:
        self.values = values
        self.statements: list[Statement] = []

    def __call__(self, statement: Statement) -> list[tuple[Any, ...]]:
        self.statements.append(statement)
        label = statement.params.get("label", "__name__")
        found = self.values.get(label, ())
        return [(value,) for value in found][: statement.params["max_values"]]


def _resolver(catalog: _Catalog, limits: QueryLimits | None = None) -> MatcherResolver:
    return MatcherResolver("t", catalog, limits or QueryLimits(), time.monotonic() + 60)


def _matchers(selector: str) -> tuple[ast.Matcher, ...]:
    expr = parse(selector)
    assert isinstance(expr, ast.VectorSelector)
    return expr.matchers


def test_regex_matchers_become_the_values_re2_matches() -> None:
    catalog = _Catalog(word=["line1\nline2", "größe", "GRÖßE", "GRÖSSE", KELVIN, "k"])
    resolved = _resolver(catalog).resolve(_matchers('m{word=~"(?i)größe|K", word!~".*"}'))
    assert resolved == (
        ast.Matcher("__name__", ast.MatchOp.EQ, "m"),
        ValueSetMatcher("word", ("GRÖßE", "größe", "k", KELVIN)),
        # `.*` matches "" (a missing label) and every value without a newline.
        ValueSetMatcher("word", ("", "GRÖSSE", "GRÖßE", "größe", "k", KELVIN), negated=True),
    )
    # One statement per regex, each narrowed by the others' matchers resolved so far.
    first, second = catalog.statements
    assert first.params["m0v"] == "m" and "m1v" not in first.params
    assert second.params["m1v"] == ["GRÖßE", "größe", "k", KELVIN]


def test_the_metric_name_is_resolved_first_and_narrows_the_rest() -> None:
    catalog = _Catalog(__name__=["up", "node_load1", "node_cpu"], job=["api"])
    resolved = _resolver(catalog).resolve(_matchers('{job=~"a.i", __name__=~"node_.*"}'))
    assert resolved == (
        ValueSetMatcher("job", ("api",)),
        ValueSetMatcher("__name__", ("node_cpu", "node_load1")),
    )
    names, jobs = catalog.statements
    assert "metric" in names.sql and "label" not in names.params
    assert jobs.params["label"] == "job" and jobs.params["m0v"] == ["node_cpu", "node_load1"]


def test_literal_alternations_and_empty_sets_need_no_more_statements() -> None:
    catalog = _Catalog(job=["web"])
    resolver = _resolver(catalog)
    assert resolver.resolve(_matchers('m{job=~"api|db", env!~"dev|"}')) == (
        ast.Matcher("__name__", ast.MatchOp.EQ, "m"),
        ValueSetMatcher("job", ("api", "db")),
        ValueSetMatcher("env", ("", "dev"), negated=True),
    )
    assert resolver.resolve(_matchers('m{job=~"a.*", zone=~"z.*"}'))[1:] == (
        ValueSetMatcher("job", ()),
        ValueSetMatcher("zone", ()),
    )
    assert len(catalog.statements) == 1  # job's; nothing can match after it
    resolver.resolve(_matchers('m{job=~"a.*", zone=~"z.*"}'))
    assert len(catalog.statements) == 1  # resolved once per selector


def test_resolution_is_bounded() -> None:
    catalog = _Catalog(pod=[f"pod-{i}" for i in range(11)])
    with pytest.raises(QueryLimitExceeded, match=r'pod=~"pod-1.*"\} would test more than 10'):
        _resolver(catalog, QueryLimits(max_series=10)).resolve(_matchers('m{pod=~"pod-1.*"}'))
    late = MatcherResolver("t", catalog, QueryLimits(), time.monotonic() - 1)
    with pytest.raises(QueryTimeout):
        late.resolve(_matchers('m{pod=~"pod-1.*"}'))


def test_statements_never_carry_a_regex() -> None:
    grid = TimeGrid(0, 0, 1)
    unresolved = _matchers('m{a=~"x.*"}')
    with pytest.raises(ValueError, match="must be resolved"):
        compile_instant("t", unresolved, grid, 1, 10)
    resolved = (unresolved[0], ValueSetMatcher("a", ("", "x\ny")), ValueSetMatcher("b", (), True))
    statement = compile_series("t", resolved, 0, 1, 10)
    assert "COALESCE(labels ->> %(m1n)s, '') = ANY(%(m1v)s)" in statement.sql
    assert "NOT (COALESCE(labels ->> %(m2n)s, '') = ANY(%(m2v)s))" in statement.sql
    assert "~" not in statement.sql
    assert statement.params["m1v"] == ["", "x\ny"]


T0_US = 1_700_000_000_000_000
WORDS = ("line1\nline2", "x\n", "größe", "GRÖßE", "GRÖẞE", "GRÖSSE", "k", KELVIN, "s", LONG_S)


@pytest.fixture
def words(conn: psycopg.Connection, tenant: tenants.Tenant) -> str:
    """A tenant whose `probe` series have the WORDS as `word`, and one has no `word`."""
    times = T0_US + np.arange(0, 600_000_000, 60_000_000, dtype=np.int64)
    keys = [SeriesKey.of("probe", {"word": word}) for word in WORDS]
    keys.append(SeriesKey.of("probe", {"other": "none"}))
    series = [SeriesSamples(key, times, np.full(len(times), 1.0)) for key in keys]
    SampleWriter(SeriesCatalog()).write(conn, SampleBatch(f"re2-{uuid.uuid4()}", tenant.id, series))
    return str(tenant.id)


SELECTIONS = [
    ('probe{word=~".+"}', {w for w in WORDS if "\n" not in w}),
    ('probe{word=~"(?s).+"}', set(WORDS)),
    ('probe{word=~"line1.line2"}', set()),
    ('probe{word=~"(?s)line1.line2"}', {"line1\nline2"}),
    ('probe{word=~"x$"}', set()),
    ('probe{word!~".*"}', {"line1\nline2", "x\n"}),
    ('probe{word=~"(?i)größe"}', {"größe", "GRÖßE", "GRÖẞE"}),
    ('probe{word=~"(?i)k|S"}', {"k", KELVIN, "s", LONG_S}),
    ('probe{word=~"\\\\w"}', {"k", "s"}),
    ('probe{word=~"\\\\pL+"}', {"größe", "GRÖßE", "GRÖẞE", "GRÖSSE", "k", KELVIN, "s", LONG_S}),
    ('probe{word=~"|k"}', {"", "k"}),  # "" is the series without the label
]


@pytest.mark.parametrize(("selector", "expected"), SELECTIONS)
def test_selectors_and_series_api_match_as_re2(
    conn: psycopg.Connection, words: str, database_url: str, selector: str, expected: set[str]
) -> None:
    explanation = Explanation()
    at = T0_US + 300_000_000
    result = QueryEngine(QueryLimits()).instant_query(conn, words, selector, at, at, explanation)
    assert {dict(series.labels).get("word", "") for series in result.series} == expected
    regexes = sum(1 for m in _matchers(selector) if m.op in (ast.MatchOp.RE, ast.MatchOp.NRE))
    literal = all(matcher_regex(m.value).literals() for m in _matchers(selector)[1:])
    assert len(explanation.statements) == 1 + (0 if literal else regexes)
    pool = Pool(database_url, max_size=1)
    try:
        service = QueryService(pool, QueryEngine(QueryLimits()), None)
        found = service.series(words, [selector], T0_US, T0_US + 600_000_000)
        assert {dict(labels).get("word", "") for labels in found} == expected
        if expected - {""}:
            values = service.label_values(words, "word", [selector], T0_US, T0_US + 600_000_000)
            assert set(values) == expected - {""}
    finally:
        pool.close()


def _promql_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
