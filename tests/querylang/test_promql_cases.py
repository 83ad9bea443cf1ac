"""PromQL semantics pinned by Prometheus-style test scripts (tests/querylang/promql/*.test).

Every eval block is one case, run twice: on Vigil's evaluator over a MemorySource (as
Prometheus's own runner runs it: at its time, as the middle step of a range query, and
with its selectors pinned by `@`), and on Prometheus 2.42 itself through
`promtool test rules`, so every expected value is provably Prometheus's.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from querylang.evaluator.values import STALE_NAN_BITS
from tests.querylang.promqltest import (
    STALE,
    Eval,
    Outcome,
    ScriptError,
    check_on_prometheus,
    check_on_vigil,
    parse_script,
    parse_series_line,
    promtool_results,
    read_script,
)

CASES_DIR = Path(__file__).with_name("promql")
FILES = sorted(CASES_DIR.glob("*.test"))
EVALS = [case for path in FILES for case in read_script(path)]


def _vigil_param(case: Eval) -> object:
    marks = [pytest.mark.xfail(strict=False, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.case_id, marks=marks)


@pytest.mark.parametrize("case", [_vigil_param(case) for case in EVALS])
def test_vigil_answers_like_prometheus(case: Eval) -> None:
    check_on_vigil(case)


Answers = dict[tuple[int, int], Outcome | str]


@pytest.fixture(scope="module")
def prometheus_answers() -> Callable[[str], Answers]:
    """Prometheus's answers to one script file's evals, asked once per file."""
    asked: dict[str, Answers] = {}

    def answers(file: str) -> Answers:
        if file not in asked:
            asked[file] = promtool_results([case for case in EVALS if case.file == file])
        return asked[file]

    return answers


@pytest.mark.parametrize("case", [pytest.param(case, id=case.case_id) for case in EVALS])
def test_expectation_is_what_prometheus_answers(
    case: Eval, prometheus_answers: Callable[[str], Answers]
) -> None:
    check_on_prometheus(case, prometheus_answers(case.file))


def test_every_script_has_cases() -> None:
    assert FILES, f"no *.test files in {CASES_DIR}"
    for path in FILES:
        assert any(case.file == path.name for case in EVALS), f"{path.name} has no eval"


@pytest.mark.parametrize(
    ("text", "labels", "values"),
    [
        ('m{a="b"} 0+10x3', (("__name__", "m"), ("a", "b")), [0.0, 10.0, 20.0, 30.0]),
        ("m 1x2", (("__name__", "m"),), [1.0, 1.0, 1.0]),
        # No hexadecimal in series values: 0x2 is 0, three times.
        ("m 0x2", (("__name__", "m"),), [0.0, 0.0, 0.0]),
        ("m 5-2x2 _ _x2 7", (("__name__", "m"),), [5.0, 3.0, 1.0, None, None, None, 7.0]),
        ('{a="x\\"y", b=""} -1 +2 1e3', (("a", 'x"y'),), [-1.0, 2.0, 1000.0]),
        ("m Inf -Inf", (("__name__", "m"),), [float("inf"), float("-inf")]),
        # Repeated addition, as Prometheus's parser does (not 0.1 * k).
        ("m 0+0.1x3", (("__name__", "m"),), [0.0, 0.1, 0.2, 0.30000000000000004]),
    ],
)
def test_series_lines_expand_as_prometheus_expands_them(
    text: str, labels: tuple[tuple[str, str], ...], values: list[float | None]
) -> None:
    line = parse_series_line(text, 1)
    assert line.labels == labels
    assert list(line.values) == values


def test_stale_is_the_stale_marker_and_nan_is_not() -> None:
    stale, nan = parse_series_line("m stale NaN", 1).values
    assert stale is not None and nan is not None
    assert _bits(stale) == STALE_NAN_BITS == _bits(STALE)
    assert math.isnan(nan) and _bits(nan) != STALE_NAN_BITS


def _bits(value: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])


@pytest.mark.parametrize(
    "script",
    [
        "load 5m\n  m 1 2\neval instant at 5m m\n  m 1 2",  # an instant eval with two values
        "eval range from 0 to 10m step 5m m\n  m 1 2",  # fewer values than steps
        'load 5m\n  {a="b"} 1',  # a loaded series without a name
        "eval_fail instant at 0 m\n  m 1",  # eval_fail with a result
        "evaluate instant at 0 m",
        "load 1m\n  m stalex2",  # only decimal literals repeat, as in Prometheus's lexer
        "load 1m\n  m Infx2",
    ],
)
def test_malformed_scripts_are_refused_with_their_line(script: str) -> None:
    with pytest.raises(ScriptError, match=r"bad\.test:\d+"):
        parse_script(script, "bad.test")
