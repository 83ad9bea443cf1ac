"""Every operator and function over a selector that matches nothing (`nothing`), with
one that matches something (`up`) on the other side of binaries: each answers what
Prometheus does, as an equivalent query, in a well-formed value (float64 values, a
bool mask, both series x steps), at one step and at several."""

from __future__ import annotations

import math
import typing

import numpy as np
import pytest

from querylang import ast
from querylang.evaluator.values import Scalar, Value, Vector
from querylang.functions import FUNCTIONS
from querylang.parser import parse
from tests.querylang.test_engine_fuzz import evaluated, well_formed

EMPTY = "nothing"
"""The expected answer of most cases: the empty vector (`nothing` finds no series)."""

AGGREGATIONS: dict[str, list[tuple[str, str]]] = {
    "sum": [("sum(nothing)", EMPTY), ("sum by (job) (nothing)", EMPTY)],
    "avg": [("avg(nothing)", EMPTY), ("avg without (job) (nothing)", EMPTY)],
    "min": [("min(nothing)", EMPTY)],
    "max": [("max(nothing)", EMPTY)],
    "count": [("count(nothing)", EMPTY), ("count by (job) (nothing)", EMPTY)],
    "stddev": [("stddev(nothing)", EMPTY)],
    "stdvar": [("stdvar by (job) (nothing)", EMPTY)],
    "topk": [("topk(2, nothing)", EMPTY), ("topk by (job) (1, nothing)", EMPTY)],
    "bottomk": [("bottomk(2, nothing)", EMPTY)],
    "quantile": [("quantile(0.5, nothing)", EMPTY), ("quantile by (job) (0.9, nothing)", EMPTY)],
    "count_values": [
        ('count_values("v", nothing)', EMPTY),
        ('count_values by (job) ("v", nothing)', EMPTY),
        ('count_values("A", nothing) == 0', EMPTY),
        ('count_values("A", nothing) + 1', EMPTY),
        ('count_values("A", nothing) or up', "up"),
        ('up unless count_values("A", nothing)', "up"),
        ('sum(count_values("A", nothing))', EMPTY),
    ],
}

# The arguments after the empty vector of functions that take scalars or strings.
_SCALARS = {"round": "2", "clamp": "0, 1", "clamp_min": "0", "clamp_max": "1"}
_STRINGS = {
    "label_replace": '"dst", "$1", "job", "(.*)"',
    "label_join": '"dst", "-", "job", "host"',
}


def _function_cases(name: str) -> list[tuple[str, str]]:
    """`name` over the empty vector (or its range), and what Prometheus answers."""
    signature = FUNCTIONS[name]
    if name == "time":
        return [("vector(time()) and nothing", EMPTY)]
    if name == "vector":
        return [
            ("vector(scalar(nothing))", "vector(NaN)"),
            ("sum(nothing) or vector(0)", "vector(0)"),
        ]
    if name == "scalar":
        return [("scalar(nothing)", "NaN"), ('scalar(count_values("v", nothing))', "NaN")]
    if name == "histogram_quantile":
        return [("histogram_quantile(0.9, nothing)", EMPTY)]
    if name == "quantile_over_time":
        return [
            ("quantile_over_time(0.5, nothing[5m])", EMPTY),
            ("quantile_over_time(0.5, nothing[5m:1m])", EMPTY),
        ]
    if name == "predict_linear":
        return [("predict_linear(nothing[5m], 60)", EMPTY)]
    if name in _STRINGS:
        return [(f"{name}(nothing, {_STRINGS[name]})", EMPTY)]
    if name in _SCALARS:
        return [(f"{name}(nothing, {_SCALARS[name]})", EMPTY)] + (
            [(f"{name}(nothing)", EMPTY)] if signature.optional else []
        )
    expected = "vector(1)" if name.startswith("absent") else EMPTY
    if signature.args == (ast.ValueType.MATRIX,):
        return [
            (f"{name}(nothing[5m])", expected),
            (f"{name}(nothing[5m:1m])", expected),
            (f'{name}(count_values("v", nothing)[5m:1m])', expected),
        ]
    assert signature.args == (ast.ValueType.VECTOR,), name
    return [(f"{name}(nothing)", expected), (f'{name}(count_values("v", nothing))', expected)]


FUNCTION_CASES = {name: _function_cases(name) for name in FUNCTIONS}

BINARY_OPS: tuple[str, ...] = typing.get_args(ast.BinaryOp)
_MATCHINGS = [
    "",
    "on (job) ",
    "ignoring (host) ",
    "on (job) group_left ",
    "ignoring (job) group_right ",
]


def _binary_cases(op: str) -> list[tuple[str, str]]:
    """`op` with the empty vector on either side, under every kind of matching."""
    if op in ast.SET_OPS:
        left_empty = {"and": EMPTY, "or": "up", "unless": EMPTY}[op]
        right_empty = {"and": EMPTY, "or": "up", "unless": "up"}[op]
        return [
            case
            for matching in ("", "on (job) ", "ignoring (host) ")
            for case in (
                (f"nothing {op} {matching}up", left_empty),
                (f"up {op} {matching}nothing", right_empty),
                (f"nothing {op} {matching}nothing", EMPTY),
            )
        ]
    modifiers = ["", "bool "] if op in ast.COMPARISON_OPS else [""]
    return [
        case
        for modifier in modifiers
        for case in (
            (f"nothing {op} {modifier}1", EMPTY),
            (f"1 {op} {modifier}nothing", EMPTY),
            *(
                pair
                for matching in _MATCHINGS
                for pair in (
                    (f"nothing {op} {modifier}{matching}up", EMPTY),
                    (f"up {op} {modifier}{matching}nothing", EMPTY),
                    (f"nothing {op} {modifier}{matching}nothing", EMPTY),
                )
            ),
        )
    ]


BINARY_CASES = {op: _binary_cases(op) for op in BINARY_OPS}

OTHER_CASES = [
    ("-nothing", EMPTY),
    ('-count_values("v", nothing)', EMPTY),
    ("max_over_time(nothing[5m:1m])", EMPTY),
    ('max_over_time((count_values("v", nothing) == 0)[5m:1m])', EMPTY),
    ("absent_over_time((nothing or nothing)[5m:1m])", "vector(1)"),
    ("topk(1, nothing) or up", "up"),
    ("sort_desc(nothing or up)", "up"),
    ("nothing @ start()", EMPTY),
    ("rate(nothing[5m] offset 1m)", EMPTY),
    # Series that are there but never present: a filter that drops every sample.
    ('count_values("v", up > Inf)', EMPTY),
    ("absent(up > Inf)", "vector(1)"),
    ("sum(up > Inf) or vector(0)", "vector(0)"),
    ("(up > Inf) or up", "up"),
    ("topk(1, up > Inf)", EMPTY),
    ("histogram_quantile(0.5, sum_total > Inf)", EMPTY),
    ("-(up > Inf)", EMPTY),
]

CASES = [
    pytest.param(query, expected, id=query)
    for cases in (*AGGREGATIONS.values(), *FUNCTION_CASES.values(), *BINARY_CASES.values())
    for query, expected in cases
] + [pytest.param(query, expected, id=query) for query, expected in OTHER_CASES]


def test_every_aggregation_function_and_operator_has_cases() -> None:
    assert set(AGGREGATIONS) == set(typing.get_args(ast.AggregateOp))
    assert all(FUNCTION_CASES.values()) and set(FUNCTION_CASES) == set(FUNCTIONS)
    assert all(BINARY_CASES.values())


def _answer(value: Value) -> dict[tuple[object, int], float] | np.ndarray:
    """What a value says: a scalar's values, or each present (series, step)'s value."""
    if isinstance(value, Scalar):
        return value.values
    assert isinstance(value, Vector)
    return {
        (labels, int(step)): float(value.values[row, step])
        for row, labels in enumerate(value.labels)
        for step in np.flatnonzero(value.present[row])
    }


def _same(got: object, want: object) -> bool:
    if isinstance(got, np.ndarray) and isinstance(want, np.ndarray):
        return bool(np.array_equal(got, want, equal_nan=True))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(
            got[key] == want[key] or (math.isnan(got[key]) and math.isnan(want[key])) for key in got
        )
    return False


@pytest.mark.parametrize("steps", [1, 7])
@pytest.mark.parametrize(("query", "expected"), CASES)
def test_empty_input_answers_like_prometheus(query: str, expected: str, steps: int) -> None:
    value = evaluated(parse(query), steps)
    assert well_formed(value, steps)
    assert _same(_answer(value), _answer(evaluated(parse(expected), steps)))


def test_nothing_matches_nothing_and_up_matches_something() -> None:
    """The premise of the cases above, at both ends of the grid."""
    assert _answer(evaluated(parse("nothing"), 7)) == {}
    assert {step for _, step in _answer(evaluated(parse("up"), 7))} == set(range(7))
