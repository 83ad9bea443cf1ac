r"""PromQL regexes as Prometheus 2.x runs them: Go's `regexp`, i.e. RE2 syntax and semantics.

Prometheus compiles a matcher's regex as `^(?:re)$` by string concatenation, with
Go's default (Perl-like) flags: `.` does not match a newline unless `(?s)`, `$` is
the end of the text (not before a final newline), `\w \d \s \b [[:alpha:]]` are
ASCII, `\pL` is Unicode, and `(?i)` folds case by Unicode simple folding (`k`, `K`
and the Kelvin sign; `s`, `S` and the long s U+017F; `ß` and `ẞ`; never `ß` and `ss`).
google-re2 (the C++ RE2 that Go's regexp reimplements) gives exactly that, whatever
the database's locale; Python's `re` and PostgreSQL's AREs do not (Unicode `\w`, `$`
before a final newline, locale-dependent case folding, `\b` as backspace, no `\pL`),
so nothing else may match a PromQL regex.

Where Go 1.19 (the compiler of Debian's Prometheus 2.42) and C++ RE2 differ in what
they accept, a regex is refused as Go refuses it: `\C`, `(?<name>…)` and non-ASCII
capture names. Their Unicode tables may differ in version (Go 1.19: Unicode 13), and
C++ RE2 refuses ("expression too large") some huge regexes that fit Go's limits.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information


class RegexError(ValueError):
    """A regex Go's regexp refuses; the message is Go's (`error parsing regexp: …`)."""


@dataclass(frozen=True)
class RegexMatch:
    """Where a regex matched a text: the (character) spans of the whole match and of
    each capture group, (-1, -1) for a group that did not take part."""

    text: str
    spans: tuple[tuple[int, int], ...]

    def group(self, index: int) -> str | None:
        """The text of group `index` (0: the whole match), None if it did not take part."""
        start, end = self.spans[index]
        return None if start < 0 else self.text[start:end]


class Regex:
    """A PromQL regex compiled as Prometheus compiles it: `^(?:pattern)$` in RE2."""

    __slots__ = ("_compiled", "_group_names", "pattern")

    def __init__(self, pattern: str, compiled: Any, group_names: tuple[str, ...]) -> None:
        self.pattern = pattern
        self._compiled = compiled
        self._group_names = group_names

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"

    def matches(self, value: str) -> bool:
        """Whether the anchored regex matches `value` (Go's `MatchString`)."""
        # Bytes take the wrapper's cheap path (no str offset bookkeeping): 2.5x faster.
        return self._compiled.search(value.encode()) is not None

    def select(self, values: Iterable[str]) -> list[str]:
        """The values the anchored regex matches, in the order given."""
        search = self._compiled.search
        return [value for value in values if search(value.encode()) is not None]

    def match(self, text: str) -> RegexMatch | None:
        """The leftmost-first match in `text` with its groups (Go's
        `FindStringSubmatchIndex`, which label_replace uses), or None."""
        found = self._compiled.search(text)
        if found is None:
            return None
        return RegexMatch(text, tuple(found.span(i) for i in range(len(self._group_names))))

    def expand(self, template: str, match: RegexMatch) -> str:
        """`template` with `$1`, `${1}`, `$name`, `${name}` replaced by the match's groups
        and `$$` by `$`, exactly as Go's `Regexp.ExpandString`: a name is the longest run
        of letters, digits and `_` (so `$1x` is the group named `1x`); a number with a
        leading zero is a name; an unknown group is empty; a malformed `$` stays."""
        out: list[str] = []
        rest = template
        while rest:
            before, dollar, rest = rest.partition("$")
            out.append(before)
            if not dollar:
                break
            if rest.startswith("$"):
                out.append("$")
                rest = rest[1:]
                continue
            reference = _reference(rest)
            if reference is None:
                out.append("$")
                continue
            name, rest = reference
            out.append(self._group_text(name, match))
        return "".join(out)

    def literals(self) -> tuple[str, ...] | None:
        """The strings the regex matches, when it is an alternation of literal strings
        (`a|b|c`, `(a|b)`, `api\\.v1|`), else None; matching then needs no candidates."""
        found = _literal_alternatives(self.pattern)
        if found is None or not all(self.matches(value) for value in found):
            return None
        return found

    def _group_text(self, name: str, match: RegexMatch) -> str:
        number = _group_number(name)
        if number is not None:
            text = match.group(number) if number < len(match.spans) else None
            return text or ""
        for index, group_name in enumerate(self._group_names):
            if group_name == name and match.spans[index][0] >= 0:
                return match.group(index) or ""
        return ""


def anchored(pattern: str) -> Regex:
    """`^(?:pattern)$` compiled as Go's `regexp.Compile` compiles it (label_replace);
    RegexError with Go's message if Go would refuse it."""
    return _compiled(pattern, bare_must_parse=False)


def matcher_regex(pattern: str) -> Regex:
    """A label matcher's regex as Prometheus 2.42's `labels.NewFastRegexMatcher`
    compiles it: anchored, and the bare pattern must parse too, so that `a)|(b`
    (which the concatenation would make valid) is refused."""
    return _compiled(pattern, bare_must_parse=True)


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str, bare_must_parse: bool) -> Regex:
    compiled = _re2_compile(f"^(?:{pattern})$")
    if bare_must_parse:
        _re2_compile(pattern)
    refusal, names = _go_syntax(pattern)
    if refusal is not None:
        raise RegexError(f"error parsing regexp: {refusal}")
    group_names = ("", *names)
    if len(group_names) != compiled.groups + 1:  # the scan missed a construct: trust RE2
        by_index = {index: name for name, index in compiled.groupindex.items()}
        group_names = tuple(by_index.get(index, "") for index in range(compiled.groups + 1))
    return Regex(pattern, compiled, group_names)


@functools.cache
def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    return options


def _re2_compile(text: str) -> Any:
    try:
        return re2.compile(text, _options())
    except re2.error as exc:
        raise RegexError(f"error parsing regexp: {_go_message(exc)}") from None
    except UnicodeEncodeError:
        raise RegexError("error parsing regexp: invalid UTF-8") from None


# RE2's error codes (re2/regexp.cc) in Go's words (regexp/syntax ErrorCode), longest first.
_GO_ERRORS = (
    ("invalid character class range", "invalid character class range"),
    ("invalid character class", "invalid character class"),
    ("invalid escape sequence", "invalid escape sequence"),
    ("missing ]", "missing closing ]"),
    ("missing )", "missing closing )"),
    ("unexpected )", "unexpected )"),
    ("trailing \\", "trailing backslash at end of expression"),
    ("no argument for repetition operator", "missing argument to repetition operator"),
    ("invalid repetition size", "invalid repeat count"),
    ("bad repetition operator", "invalid nested repetition operator"),
    ("invalid perl operator", "invalid or unsupported Perl syntax"),
    ("invalid named capture group", "invalid named capture"),
    ("invalid UTF-8", "invalid UTF-8"),
)


def _go_message(exc: Exception) -> str:
    """RE2's `code: argument` as Go writes it: ``code: `argument` ``."""
    raw = exc.args[0] if exc.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if text.startswith("pattern too large"):
        return "expression too large"
    for re2_code, go_code in _GO_ERRORS:
        if text.startswith(f"{re2_code}: "):
            return f"{go_code}: `{text[len(re2_code) + 2 :]}`"
    return text


def _go_syntax(pattern: str) -> tuple[str | None, tuple[str, ...]]:
    """What Go refuses in a pattern RE2 accepted (or None), and the capture groups'
    names in order ("" for an unnamed group). Only called once RE2 has parsed the
    pattern, so its classes, escapes and groups are well formed."""
    names: list[str] = []
    i, end = 0, len(pattern)
    while i < end:
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if escaped == "C":
                return "invalid escape sequence: `\\C`", ()
            if escaped == "Q":  # literal text up to \E or the end
                close = pattern.find("\\E", i + 2)
                i = end if close < 0 else close + 2
                continue
            i += 2
        elif char == "[":
            i = _class_end(pattern, i)
        elif pattern.startswith("(?P<", i):
            close = pattern.index(">", i)
            name = pattern[i + 4 : close]
            if not (name.isascii() and name.replace("_", "a").isalnum()):
                return f"invalid named capture: `{pattern[i : close + 1]}`", ()
            names.append(name)
            i = close + 1
        elif pattern.startswith("(?<", i):
            return "invalid or unsupported Perl syntax: `(?<`", ()
        elif pattern.startswith("(?", i):
            i += 2  # flags or a non-capturing group
        else:
            if char == "(":
                names.append("")
            i += 1
    return None, tuple(names)


def _class_end(pattern: str, start: int) -> int:
    """The index after the character class that opens at `start`."""
    i = start + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):  # a leading ] is a literal
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        if pattern[i] == "\\":
            i += 2
        elif pattern.startswith("[:", i) and (close := pattern.find(":]", i + 2)) >= 0:
            i = close + 2
        else:
            i += 1
    return i + 1


def _reference(text: str) -> tuple[str, str] | None:
    """The group name after a `$` and the text after it (Go's `extract`), or None."""
    braced = text.startswith("{")
    body = text[1:] if braced else text
    length = 0
    while length < len(body) and (
        body[length].isalpha() or body[length].isdecimal() or body[length] == "_"
    ):
        length += 1
    if length == 0:
        return None
    name, rest = body[:length], body[length:]
    if braced:
        if not rest.startswith("}"):
            return None
        rest = rest[1:]
    return name, rest


def _group_number(name: str) -> int | None:
    """A group reference as a number (at most 9 ASCII digits, no leading zero), else None."""
    if not (name.isascii() and name.isdigit()) or (len(name) > 1 and name[0] == "0"):
        return None
    return int(name) if len(name) <= 9 else None


_META = frozenset("\\.+*?()|[]{}^$")


def _literal_alternatives(pattern: str) -> tuple[str, ...] | None:
    """`a|b|c` (optionally in one group) as its literal strings, or None if any part
    is not a plain literal (an escaped ASCII punctuation character is literal)."""
    body = pattern
    for opening in ("(?:", "("):
        if body.startswith(opening) and body.endswith(")") and not body.endswith("\\)"):
            body = body[len(opening) : -1]
            break
    alternatives: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            escaped = body[i + 1 : i + 2]
            if not escaped or not escaped.isascii() or escaped.isalnum():
                return None
            current.append(escaped)
            i += 2
            continue
        if char == "|":
            alternatives.append("".join(current))
            current = []
        elif char in _META:
            return None
        else:
            current.append(char)
        i += 1
    alternatives.append("".join(current))
    return tuple(dict.fromkeys(alternatives))
