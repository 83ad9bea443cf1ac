"""Prometheus's PromQL test scripts (`promql/testdata/*.test`, 2.42 dialect), read and
run against Vigil's evaluator on a `MemorySource`, and against a real Prometheus.

The format, as Prometheus 2.42's `promql/test.go` reads it:

    load 5m                                   # samples at 0, 5m, 10m, …
        http_requests{job="api"} 0+10x10 _ stale 3x2
    eval instant at 50m sum(http_requests)    # then the expected vector …
        {} 100
    eval instant at 50m scalar(vector(1))     # … or a bare number for a scalar
        1
    eval_ordered instant at 50m sort(x)       # result order matters
    eval_fail instant at 50m x + on() x       # the query must fail
    clear                                     # forget every series

plus the range evaluation of today's `promqltest` (one value per step, `_` where
the series is absent): `eval range from 0 to 10m step 5m expr`. Values use the
expanding notation of `promtool test rules`: `a+bxn` is n+1 values from a, adding b
each time (by repeated addition, like Go); `axn` is a repeated n+1 times; `_` is no
sample and `_xn` n of them; `stale` is a stale marker. A comment ends a block, as in
Prometheus; `# vigil-xfail: reason` right above an eval marks a known Vigil defect
(the expectation is still Prometheus's, and is checked against it).

Vigil runs each instant eval as Prometheus's own test runner does: once at its time,
again as the middle step of a range query around it, and again with every selector
pinned by `@` at five other times (expressions using time(), timestamp() or
predict_linear(), whose answer depends on the step, and those with `@ start()` or
`@ end()` are not pinned). `promtool_results` asks `promtool test rules` (Prometheus
2.42's engine) the same evals, so the expected values can be checked at the source.
"""

from __future__ import annotations

import json
import math
import re
import struct
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import reduce
from pathlib import Path
from typing import Literal

import numpy as np

from querylang import ast
from querylang.answers import check_range_expr, instant_answer
from querylang.errors import QueryError
from querylang.evaluator.context import Context
from querylang.evaluator.evaluate import evaluate
from querylang.evaluator.values import STALE_NAN_BITS, RangeVector, Scalar, String, Value, Vector
from querylang.memory_source import MemorySource
from querylang.parser import parse
from querylang.printer import to_promql
from querylang.timegrid import TimeGrid

Labels = tuple[tuple[str, str], ...]
"""A label set sorted by name, `__name__` included when the series has one."""

MS_US = 1_000
LOOKBACK_US = 5 * 60 * 1_000_000
"""Prometheus's default lookback delta, which its test runner and promtool use."""
EPSILON = 1e-6
"""Relative error allowed between an expected and an actual value (test.go's epsilon)."""
STALE = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]

AT_UNSAFE_FUNCTIONS = frozenset({"time", "timestamp", "predict_linear"})
"""2.42's AtModifierUnsafeFunctions that Vigil has: their answer depends on the step."""


class ScriptError(ValueError):
    """A test script that does not follow the format; says file and line."""


@dataclass(frozen=True)
class SeriesLine:
    """A series and its values, one per step (None: no sample there)."""

    labels: Labels
    values: tuple[float | None, ...]
    line: int


@dataclass(frozen=True)
class Load:
    """`load <step>`: samples at 0, step, 2 x step, … for each series."""

    step_us: int
    series: tuple[SeriesLine, ...]
    line: int


@dataclass(frozen=True)
class Eval:
    """One `eval` block and the loads its store holds (those since the last `clear`).

    An instant eval has start == end and step 0; its expectation is `series` (one
    value each) or, for a scalar, `scalar`. A range eval's series have one value per
    step, None where the series is absent."""

    file: str
    line: int
    expr: str
    kind: Literal["instant", "range"]
    start_us: int
    end_us: int
    step_us: int
    fail: bool
    ordered: bool
    series: tuple[SeriesLine, ...]
    scalar: float | None
    loads: tuple[Load, ...]
    xfail: str | None = None

    @property
    def case_id(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def steps(self) -> int:
        return (self.end_us - self.start_us) // self.step_us + 1 if self.step_us else 1

    @property
    def times_us(self) -> list[int]:
        return [self.start_us + k * self.step_us for k in range(self.steps)]


# ---------------------------------------------------------------------------------
# Reading scripts

_LOAD = re.compile(r"^load\s+(\S+)$")
_EVAL_INSTANT = re.compile(r"^eval(?:_(fail|ordered))?\s+instant\s+at\s+(\S+)\s+(.+)$")
_EVAL_RANGE = re.compile(
    r"^eval(?:_(fail))?\s+range\s+from\s+(\S+)\s+to\s+(\S+)\s+step\s+(\S+)\s+(.+)$"
)
_XFAIL = re.compile(r"^#\s*vigil-xfail:\s*(.+)$")
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_UNITS_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


def parse_duration(text: str) -> int:
    """Prometheus's `model.ParseDuration` (`1h30m`, `250ms`, `0`), in µs."""
    if text == "0":
        return 0
    found = _DURATION.match(text)
    if not text or found is None:
        raise ValueError(f"not a duration: {text!r}")
    return MS_US * sum(
        int(part) * unit
        for part, unit in zip(found.groups(), _DURATION_UNITS_MS, strict=True)
        if part
    )


def read_script(path: Path) -> list[Eval]:
    """Every eval of a script file, each with the loads it sees."""
    return parse_script(path.read_text(encoding="utf-8"), path.name)


def parse_script(text: str, file: str) -> list[Eval]:
    """Every eval of a script, each with the loads it sees."""
    raw = text.splitlines()
    lines = ["" if line.strip().startswith("#") else line.strip() for line in raw]
    evals: list[Eval] = []
    loads: list[Load] = []
    xfail: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        number = index + 1
        marker = _XFAIL.match(raw[index].strip())
        if marker:
            xfail = marker.group(1)
        if not line:
            index += 1
            continue
        command = line.split(None, 1)[0].lower()
        block = []
        end = index + 1
        while command != "clear" and end < len(lines) and lines[end]:
            block.append((end + 1, lines[end]))
            end += 1
        try:
            if command == "clear":
                loads, xfail = [], None
            elif command == "load":
                loads.append(_load(line, number, block))
                xfail = None
            elif command.startswith("eval"):
                evals.append(_eval(line, number, block, file, tuple(loads), xfail))
                xfail = None
            else:
                raise ValueError(f"unknown command {line!r}")
        except ValueError as exc:
            raise ScriptError(f"{file}:{number}: {exc}") from exc
        index = end
    return evals


def _load(line: str, number: int, block: list[tuple[int, str]]) -> Load:
    header = _LOAD.match(line)
    if header is None:
        raise ValueError("expected `load <step>`")
    step = parse_duration(header.group(1))
    series = tuple(parse_series_line(text, at) for at, text in block)
    for item in series:
        if not dict(item.labels).get("__name__"):
            raise ValueError(f"line {item.line}: a loaded series needs a metric name")
    return Load(step, series, number)


def _eval(
    line: str,
    number: int,
    block: list[tuple[int, str]],
    file: str,
    loads: tuple[Load, ...],
    xfail: str | None,
) -> Eval:
    instant = _EVAL_INSTANT.match(line)
    ranged = _EVAL_RANGE.match(line)
    if instant:
        modifier, at, expr = instant.groups()
        start = end = parse_duration(at)
        step = 0
        kind: Literal["instant", "range"] = "instant"
    elif ranged:
        modifier, first, last, every, expr = ranged.groups()
        start, end, step = parse_duration(first), parse_duration(last), parse_duration(every)
        if step <= 0 or end < start:
            raise ValueError("a range eval needs start <= end and a positive step")
        kind = "range"
    else:
        raise ValueError(
            "expected `eval[_fail|_ordered] instant at <time> <expr>` or "
            "`eval[_fail] range from <start> to <end> step <step> <expr>`"
        )
    scalar: float | None = None
    series: list[SeriesLine] = []
    for at, text in block:
        number_value = _number(text)
        if kind == "instant" and number_value is not None:
            if series or scalar is not None:
                raise ValueError(f"line {at}: a scalar expectation stands alone")
            scalar = number_value
            continue
        item = parse_series_line(text, at)
        if kind == "instant" and len(item.values) != 1:
            raise ValueError(f"line {at}: an instant eval expects one value per series")
        if kind == "range" and len(item.values) != (end - start) // step + 1:
            raise ValueError(f"line {at}: expected one value per step, {(end - start) // step + 1}")
        if any(item.labels == other.labels for other in series):
            raise ValueError(f"line {at}: series listed twice")
        series.append(item)
    fail = modifier == "fail"
    if fail and (series or scalar is not None):
        raise ValueError("eval_fail expects no result lines")
    return Eval(
        file,
        number,
        expr.strip(),
        kind,
        start,
        end,
        step,
        fail,
        modifier == "ordered",
        tuple(series),
        scalar,
        loads,
        xfail,
    )


# Series descriptions: `metric{name="value", …} values…`

_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Numbers as Prometheus's lexer reads them in series descriptions: no hexadecimal
# (`0x10` would be ambiguous), and only decimal literals repeat (`Infx2` is one word).
_DECIMAL = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER = rf"[-+]?(?:{_DECIMAL}|[iI][nN][fF]|[nN][aA][nN])"
_ITEM = re.compile(
    rf"^(?:(?P<blank>_)(?:x(?P<blanks>\d+))?|(?P<stale>stale)|(?P<number>{_NUMBER})"
    rf"|(?P<start>[-+]?{_DECIMAL})(?P<delta>[-+]{_DECIMAL})?x(?P<times>\d+))$"
)


def _number(text: str) -> float | None:
    """A Go/PromQL number literal's value, or None if `text` is not one."""
    if re.fullmatch(_NUMBER, text) is None:
        return None
    return float(text)


def parse_series_line(text: str, line: int) -> SeriesLine:
    """A series description: labels, then its values in the expanding notation."""
    labels, rest = _series_labels(text)
    values: list[float | None] = []
    for item in rest.split():
        found = _ITEM.match(item)
        if found is None:
            raise ValueError(f"line {line}: not a series value: {item!r}")
        if found.group("blank"):
            values += [None] * (int(found.group("blanks")) if found.group("blanks") else 1)
        elif found.group("stale"):
            values.append(STALE)
        elif found.group("number"):
            values.append(float(found.group("number")))
        else:
            value = float(found.group("start"))
            delta = float(found.group("delta") or 0)
            for _ in range(int(found.group("times")) + 1):
                values.append(value)
                value += delta  # repeated addition, as Prometheus's parser does
    return SeriesLine(labels, tuple(values), line)


def _series_labels(text: str) -> tuple[Labels, str]:
    """The label set a series description starts with, and the rest of the line."""
    pairs: dict[str, str] = {}
    position = 0
    name = _IDENTIFIER.match(text)
    if name:
        pairs["__name__"] = name.group(0)
        position = name.end()
    if text[position : position + 1] == "{":
        position += 1
        while True:
            position = _skip_spaces(text, position)
            if text[position : position + 1] == "}":
                position += 1
                break
            label = _LABEL_NAME.match(text, position)
            if label is None:
                raise ValueError(f"expected a label name at {text[position:]!r}")
            position = _skip_spaces(text, label.end())
            if text[position : position + 1] != "=":
                raise ValueError(f"expected '=' after {label.group(0)!r}")
            value, position = _go_string(text, _skip_spaces(text, position + 1))
            if label.group(0) in pairs:
                raise ValueError(f"label {label.group(0)!r} given twice")
            pairs[label.group(0)] = value
            position = _skip_spaces(text, position)
            if text[position : position + 1] == ",":
                position += 1
            elif text[position : position + 1] != "}":
                raise ValueError(f"expected ',' or '}}' at {text[position:]!r}")
    elif not name:
        raise ValueError(f"expected a series description: {text!r}")
    labels = tuple(sorted((key, value) for key, value in pairs.items() if value))
    return labels, text[position:]


def _skip_spaces(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t":
        position += 1
    return position


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _go_string(text: str, position: int) -> tuple[str, int]:
    """A Go string literal ("…", '…' or `…`) at `position`: its value and end."""
    quote = text[position : position + 1]
    if quote == "`":
        end = text.find("`", position + 1)
        if end < 0:
            raise ValueError("unterminated raw string")
        return text[position + 1 : end], end + 1
    if quote not in ('"', "'"):
        raise ValueError(f"expected a string at {text[position:]!r}")
    out: list[str] = []
    index = position + 1
    while index < len(text):
        char = text[index]
        if char == quote:
            return "".join(out), index + 1
        if char != "\\":
            out.append(char)
            index += 1
            continue
        code = text[index + 1 : index + 2]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            index += 2
        elif code in ("\\", '"', "'"):
            out.append(code)
            index += 2
        elif code in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[code]
            out.append(chr(int(text[index + 2 : index + 2 + width], 16)))
            index += 2 + width
        elif code.isdigit():
            out.append(chr(int(text[index + 1 : index + 4], 8)))
            index += 4
        else:
            raise ValueError(f"unknown escape \\{code}")
    raise ValueError("unterminated string")


# ---------------------------------------------------------------------------------
# Running on Vigil


def memory_source(loads: Sequence[Load]) -> MemorySource:
    """A MemorySource holding what `loads` load."""
    source = MemorySource()
    for load in loads:
        for item in load.series:
            labels = dict(item.labels)
            metric = labels.pop("__name__")
            kept = [(k * load.step_us, v) for k, v in enumerate(item.values) if v is not None]
            times = np.array([t for t, _ in kept], dtype=np.int64)
            values = np.array([v for _, v in kept], dtype=np.float64)
            source.add(metric, labels, times, values)
    return source


Answer = dict[Labels, list[float | None]]
"""A result per label set, one value per step (None: absent). A scalar is `{(): …}`."""


@dataclass(frozen=True)
class Outcome:
    """What an evaluation returned: its kind and values, and the label sets of an
    instant vector in the order an instant query returns them."""

    kind: Literal["vector", "scalar", "matrix", "string"]
    answer: Answer
    order: tuple[Labels, ...] = ()


def run_vigil(
    expr: ast.Expr, source: MemorySource, start_us: int, end_us: int, step_us: int
) -> Outcome:
    """`expr` evaluated as Vigil's engine would: an instant query when step is 0
    (one step at start), else a range query (which must be a scalar or vector)."""
    steps = (end_us - start_us) // step_us + 1 if step_us else 1
    if step_us:
        check_range_expr(expr)
    grid = TimeGrid(start_us, step_us, steps)
    value: Value = evaluate(expr, Context(grid, start_us, end_us, LOOKBACK_US, source))
    if isinstance(value, Scalar):
        return Outcome("scalar", {(): [float(v) for v in value.values]})
    if isinstance(value, String):
        return Outcome("string", {})
    if isinstance(value, RangeVector):
        return Outcome("matrix", {})
    assert isinstance(value, Vector)
    answer: Answer = {}
    for row, labels in enumerate(value.labels):
        if not value.present[row].any():
            continue
        if labels in answer:
            raise AssertionError(f"Vigil returned {_show(labels)} twice")
        answer[labels] = [
            float(value.values[row, k]) if value.present[row, k] else None for k in range(steps)
        ]
    order = tuple(series.labels for series in instant_answer(expr, value, start_us).series)
    return Outcome("vector", answer, order)


def check_on_vigil(case: Eval) -> None:
    """Run one eval on Vigil as Prometheus's test runner runs it; AssertionError
    saying what differs."""
    source = memory_source(case.loads)
    try:
        expr = parse(case.expr)
    except QueryError as exc:
        if case.fail:
            return
        raise AssertionError(f"{case.case_id}: Vigil cannot parse {case.expr!r}: {exc}") from exc
    if case.kind == "range":
        _check(case, expr, source, case.start_us, case.end_us, case.step_us, "range query")
        return
    for variant, time_us, label in _instant_variants(case, expr):
        _check(case, variant, source, time_us, time_us, 0, label)
        if not case.fail and not case.ordered:
            # Prometheus's runner: the same answer as the middle of a range query.
            _check(
                case,
                variant,
                source,
                time_us - 60_000_000,
                time_us + 60_000_000,
                60_000_000,
                f"{label}, range mode",
                middle=True,
            )


def _instant_variants(case: Eval, expr: ast.Expr) -> Iterator[tuple[ast.Expr, int, str]]:
    """The instant eval itself, then (as 2.42's atModifierTestCases) the expression
    with every selector pinned at the eval time, evaluated at other times."""
    yield expr, case.start_us, "instant"
    if _uses_step_time(expr):
        return
    ts = case.start_us // MS_US
    others = [-1000, -ts, 1000] if ts == 0 else [-10 * ts, 0, int(ts / 5), ts, 10 * ts]
    pinned = _pinned(expr, case.start_us)
    for other in others:
        yield pinned, other * MS_US, f"pinned `{to_promql(pinned)}` at {other} ms"


def _uses_step_time(expr: ast.Expr) -> bool:
    match expr:
        case ast.Call():
            return expr.func in AT_UNSAFE_FUNCTIONS or any(_uses_step_time(a) for a in expr.args)
        case ast.VectorSelector():
            return expr.at is not None and expr.at.kind != "time"
        case ast.MatrixSelector():
            return _uses_step_time(expr.vector)
        case ast.Subquery():
            at = expr.at is not None and expr.at.kind != "time"
            return at or _uses_step_time(expr.expr)
        case ast.UnaryExpr():
            return _uses_step_time(expr.expr)
        case ast.BinaryExpr():
            return _uses_step_time(expr.lhs) or _uses_step_time(expr.rhs)
        case ast.AggregateExpr():
            param = expr.param is not None and _uses_step_time(expr.param)
            return param or _uses_step_time(expr.expr)
    return False


def _pinned(expr: ast.Expr, time_us: int) -> ast.Expr:
    """`expr` with `@ time` on every selector and subquery that has no `@` (not
    inside subqueries), as Prometheus's test runner rewrites it."""
    at = ast.AtModifier("time", time_us)
    match expr:
        case ast.VectorSelector():
            return expr if expr.at is not None else replace(expr, at=at)
        case ast.MatrixSelector():
            vector = expr.vector if expr.vector.at is not None else replace(expr.vector, at=at)
            return replace(expr, vector=vector)
        case ast.Subquery():
            return expr if expr.at is not None else replace(expr, at=at)
        case ast.UnaryExpr():
            return replace(expr, expr=_pinned(expr.expr, time_us))
        case ast.BinaryExpr():
            return replace(expr, lhs=_pinned(expr.lhs, time_us), rhs=_pinned(expr.rhs, time_us))
        case ast.AggregateExpr():
            param = None if expr.param is None else _pinned(expr.param, time_us)
            return replace(expr, expr=_pinned(expr.expr, time_us), param=param)
        case ast.Call():
            return replace(expr, args=tuple(_pinned(arg, time_us) for arg in expr.args))
    return expr


def _check(
    case: Eval,
    expr: ast.Expr,
    source: MemorySource,
    start_us: int,
    end_us: int,
    step_us: int,
    label: str,
    middle: bool = False,
) -> None:
    where = f"{case.case_id} ({label})"
    try:
        outcome = run_vigil(expr, source, start_us, end_us, step_us)
    except QueryError as exc:
        if case.fail:
            return
        raise AssertionError(f"{where}: {case.expr!r} failed: {type(exc).__name__}: {exc}") from exc
    if case.fail:
        raise AssertionError(f"{where}: {case.expr!r} should fail but answered {outcome}")
    if outcome.kind in ("matrix", "string"):
        raise AssertionError(
            f"{where}: received a {outcome.kind} result, expected a vector or scalar"
        )
    if middle:  # the middle step of a range query, as an instant answer
        outcome = Outcome(
            outcome.kind,
            {lb: [vals[1]] for lb, vals in outcome.answer.items() if vals[1] is not None},
        )
    problems = compare(case, outcome)
    if problems:
        raise AssertionError(f"{where}: {case.expr!r}\n  " + "\n  ".join(problems))


def compare(case: Eval, outcome: Outcome) -> list[str]:
    """How `outcome` differs from the eval's expectation (nothing: it matches)."""
    if case.kind == "instant" and case.scalar is not None:
        if outcome.kind != "scalar":
            got_text = _answer(outcome.answer)
            return [f"expected the scalar {case.scalar}, got a {outcome.kind}: {got_text}"]
        value = outcome.answer[()][0]
        assert value is not None
        if almost_equal(case.scalar, value):
            return []
        return [f"expected scalar {case.scalar}, got {value}"]
    if case.kind == "instant" and outcome.kind == "scalar":
        return [f"expected a vector, got the scalar {outcome.answer[()][0]}"]
    answer = outcome.answer  # a range query's scalar is the series {}, as in Prometheus
    expected = {item.labels: list(item.values) for item in case.series}
    problems = []
    for labels, values in expected.items():
        got = answer.get(labels)
        if got is None:
            problems.append(f"missing {_show(labels)} {_values(values)}")
        elif not all(_same(want, have) for want, have in zip(values, got, strict=True)):
            problems.append(f"{_show(labels)}: expected {_values(values)}, got {_values(got)}")
    for labels, values in answer.items():
        if labels not in expected:
            problems.append(f"unexpected {_show(labels)} {_values(values)}")
    if case.ordered and not problems:
        want_order = [item.labels for item in case.series]
        if list(outcome.order) != want_order:
            problems.append(
                f"order: expected {[_show(lb) for lb in want_order]}, "
                f"got {[_show(lb) for lb in outcome.order]}"
            )
    return problems


def almost_equal(a: float, b: float) -> bool:
    """test.go's almostEqual: NaN equals NaN; otherwise a small relative error."""
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    diff = abs(a - b)
    min_normal = 2.2250738585072014e-308
    if a == 0 or b == 0 or diff < min_normal:
        return diff < EPSILON * min_normal
    return diff / (abs(a) + abs(b)) < EPSILON


def _same(want: float | None, have: float | None) -> bool:
    if want is None or have is None:
        return want is None and have is None
    return almost_equal(want, have)


def _show(labels: Labels) -> str:
    pairs = dict(labels)
    name = pairs.pop("__name__", "")
    return name + "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in pairs.items()) + "}"


def _values(values: Sequence[float | None]) -> str:
    return " ".join("_" if v is None else repr(v) for v in values)


def _answer(answer: Answer) -> str:
    return "; ".join(f"{_show(lb)} {_values(vals)}" for lb, vals in answer.items())


# ---------------------------------------------------------------------------------
# Running on Prometheus (promtool test rules)

PROMTOOL = Path("/usr/bin/promtool")
PROMTOOL_EVALUATION_INTERVAL_US = 60_000_000
"""promtool's evaluation interval, which is also its default subquery step (as ours)."""


@dataclass(frozen=True)
class PromtoolQuery:
    """One instant query promtool answers, and the eval (and step) it belongs to."""

    eval: Eval
    step: int
    expr: str
    time_us: int


def promtool_results(evals: Sequence[Eval]) -> dict[tuple[int, int], Outcome | str]:
    """Prometheus 2.42's answer to every step of every eval, keyed by (eval line,
    step): an Outcome (a vector, a scalar as the vector `{}`) or the error text.

    Each distinct store becomes one `promtool test rules` group whose expression tests
    all expect an impossible sample, so promtool reports every answer, in order."""
    groups: dict[tuple[Load, ...], list[PromtoolQuery]] = {}
    for case in evals:
        for step, time_us in enumerate(case.times_us):
            expr = _resolved_start_end(case.expr, case.start_us, case.end_us)
            groups.setdefault(case.loads, []).append(PromtoolQuery(case, step, expr, time_us))
    tests = []
    asked: list[PromtoolQuery] = []
    for loads, queries in groups.items():
        tests.append(_promtool_group(loads, queries, len(asked)))
        asked += queries
    with tempfile.TemporaryDirectory(prefix="vigil-promqltest-") as root:
        path = Path(root) / "cases.yml"
        path.write_text(json.dumps({"evaluation_interval": "1m", "tests": tests}, indent=1))
        if not PROMTOOL.exists():
            raise RuntimeError(f"{PROMTOOL} is missing; `make test` installs it via ops/install")
        ran = subprocess.run(
            [str(PROMTOOL), "test", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    reports = _promtool_reports(ran.stderr)
    if len(reports) != len(asked):
        raise RuntimeError(
            f"promtool answered {len(reports)} of {len(asked)} queries:\n{ran.stderr[-3000:]}"
        )
    results: dict[tuple[int, int], Outcome | str] = {}
    for query, report in zip(asked, reports, strict=True):
        results[query.eval.line, query.step] = report
    return results


def _resolved_start_end(expr: str, start_us: int, end_us: int) -> str:
    """`@ start()` / `@ end()` as the range query's times: promtool asks instant
    queries, whose start and end are the evaluation time."""
    expr = re.sub(r"@\s*start\(\s*\)", f"@ {start_us / 1e6:.3f}", expr)
    return re.sub(r"@\s*end\(\s*\)", f"@ {end_us / 1e6:.3f}", expr)


def _promtool_group(
    loads: tuple[Load, ...], queries: list[PromtoolQuery], first: int
) -> dict[str, object]:
    merged: dict[Labels, dict[int, float]] = {}
    steps = [load.step_us // MS_US for load in loads] or [60_000]
    interval_ms = reduce(math.gcd, steps)
    last_ms = 0
    for load in loads:
        for item in load.series:
            points = merged.setdefault(item.labels, {})
            for k, value in enumerate(item.values):
                if value is not None:
                    points[k * load.step_us // MS_US] = value
                    last_ms = max(last_ms, k * load.step_us // MS_US)
    input_series = [
        {"series": _series_text(labels), "values": _values_text(points, interval_ms)}
        for labels, points in merged.items()
    ]
    # promtool loads samples only up to its last evaluation time, in steps of the
    # evaluation interval: a last test past every sample and query makes it load all.
    latest = max([last_ms, *(q.time_us // MS_US for q in queries)]) + 60_000
    latest = -(-latest // 60_000) * 60_000
    tests: list[dict[str, object]] = [
        {
            "expr": query.expr,
            "eval_time": f"{query.time_us // MS_US}ms",
            "exp_samples": [{"labels": f'{{__promqltest__="{first + index}"}}', "value": 0}],
        }
        for index, query in enumerate(queries)
    ]
    tests.append(
        {
            "expr": "vector(0)",
            "eval_time": f"{latest}ms",
            "exp_samples": [{"labels": "{}", "value": 0}],
        }
    )
    return {"interval": f"{interval_ms}ms", "input_series": input_series, "promql_expr_test": tests}


def _series_text(labels: Labels) -> str:
    pairs = dict(labels)
    name = pairs.pop("__name__", "")
    return name + "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in pairs.items()) + "}"


def _values_text(points: dict[int, float], interval_ms: int) -> str:
    items: list[str] = []
    blanks = 0
    for index in range(max(points) // interval_ms + 1 if points else 0):
        value = points.get(index * interval_ms)
        if value is None:
            blanks += 1
            continue
        if blanks:
            items.append("_" if blanks == 1 else f"_x{blanks}")
            blanks = 0
        items.append(_go_float(value))
    return " ".join(items)


def _go_float(value: float) -> str:
    if struct.pack("<d", value) == struct.pack("<d", STALE):
        return "stale"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return repr(value)


_REPORT_START = re.compile(r"^    expr: ", re.MULTILINE)
_SAMPLE = re.compile(
    r'(\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}) ([-+]?(?:Inf|NaN|[0-9.]+(?:E[-+]?[0-9]+)?))'
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _promtool_reports(stderr: str) -> list[Outcome | str]:
    """promtool's failure reports, in test order: the samples it got, or its error."""
    starts = [found.start() for found in _REPORT_START.finditer(stderr)]
    reports: list[Outcome | str] = []
    for begin, end in zip(starts, [*starts[1:], len(stderr)], strict=True):
        text = stderr[begin:end]
        got = re.search(r"^        got: (.*)$", text, re.MULTILINE)
        if got is None:
            error = re.search(r", err: (.*)", text, re.DOTALL)
            reports.append(error.group(1).strip() if error else text.strip())
            continue
        answer: Answer = {}
        if got.group(1).strip() != "nil":
            for labels_text, value in _SAMPLE.findall(got.group(1)):
                labels = tuple(
                    sorted((k, _go_string(f'"{v}"', 0)[0]) for k, v in _LABEL.findall(labels_text))
                )
                answer[labels] = [float(value.replace("Inf", "inf"))]
        reports.append(Outcome("vector", answer))
    return reports


def check_on_prometheus(case: Eval, results: dict[tuple[int, int], Outcome | str]) -> None:
    """The eval's expectation against Prometheus's answers (promtool_results of its
    file); AssertionError saying what differs. Order cannot be checked: promtool
    sorts its answers."""
    per_step = [results[case.line, step] for step in range(case.steps)]
    errors = [report for report in per_step if isinstance(report, str)]
    if case.fail:
        if len(errors) != len(per_step):
            raise AssertionError(f"{case.case_id}: Prometheus does not fail on {case.expr!r}")
        return
    if errors:
        raise AssertionError(f"{case.case_id}: Prometheus fails on {case.expr!r}: {errors[0]}")
    answer: Answer = {}
    for step, report in enumerate(per_step):
        assert isinstance(report, Outcome)
        for labels, values in report.answer.items():
            answer.setdefault(labels, [None] * case.steps)[step] = values[0]
    scalar = case.kind == "instant" and case.scalar is not None and set(answer) == {()}
    outcome = Outcome("scalar" if scalar else "vector", answer)
    problems = compare(replace(case, ordered=False), outcome)
    if problems:
        raise AssertionError(
            f"{case.case_id}: Prometheus answers {case.expr!r} otherwise\n  "
            + "\n  ".join(problems)
        )
