"""Function signatures: what each supported PromQL function takes and returns.

The evaluator's implementation table (`querylang/evaluator/calls.py`) must have
exactly these keys; a test keeps the two in sync.
"""

from __future__ import annotations

from dataclasses import dataclass

from querylang.ast import ValueType

S, V, M, STR = ValueType.SCALAR, ValueType.VECTOR, ValueType.MATRIX, ValueType.STRING


@dataclass(frozen=True)
class Signature:
    """Argument and return types. `optional` counts trailing arguments that may be
    omitted; `repeat_last` lets the last argument repeat any number of times."""

    args: tuple[ValueType, ...]
    returns: ValueType
    optional: int = 0
    repeat_last: bool = False


_ELEMENTWISE = ("abs", "ceil", "floor", "sqrt", "exp", "ln", "log2", "log10")
_OVER_TIME = (
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "present_over_time",
)
_RANGE = ("rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes")

FUNCTIONS: dict[str, Signature] = {
    **{name: Signature((V,), V) for name in _ELEMENTWISE},
    **{name: Signature((M,), V) for name in _OVER_TIME + _RANGE},
    "quantile_over_time": Signature((S, M), V),
    "predict_linear": Signature((M, S), V),
    "absent_over_time": Signature((M,), V),
    "histogram_quantile": Signature((S, V), V),
    "clamp": Signature((V, S, S), V),
    "clamp_min": Signature((V, S), V),
    "clamp_max": Signature((V, S), V),
    "round": Signature((V, S), V, optional=1),
    "time": Signature((), S),
    "timestamp": Signature((V,), V),
    "vector": Signature((S,), V),
    "scalar": Signature((V,), S),
    "absent": Signature((V,), V),
    "sort": Signature((V,), V),
    "sort_desc": Signature((V,), V),
    "label_replace": Signature((V, STR, STR, STR, STR), V),
    "label_join": Signature((V, STR, STR, STR), V, optional=1, repeat_last=True),
}
