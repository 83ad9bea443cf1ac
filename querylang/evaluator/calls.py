"""Function implementations, one per name in `querylang.functions.FUNCTIONS`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from querylang import ast
from querylang.errors import EvaluationError
from querylang.evaluator import selectors, tiers, windows
from querylang.evaluator.context import Context
from querylang.evaluator.quantiles import bucket_quantile
from querylang.evaluator.values import (
    METRIC_NAME,
    Floats,
    Labels,
    Mask,
    RangeVector,
    Scalar,
    String,
    Value,
    Vector,
    drop_name,
    label_value,
    unique,
    unique_over_time,
    with_label,
)
from querylang.labels import is_valid_label_name
from querylang.regex import RegexError, anchored

Evaluate = Callable[[ast.Expr, Context], Value]
Implementation = Callable[[ast.Call, Context, Evaluate], Value]


def _vector(expr: ast.Expr, ctx: Context, evaluate: Evaluate) -> Vector:
    value = evaluate(expr, ctx)
    assert isinstance(value, Vector)
    return value


def _scalar(expr: ast.Expr, ctx: Context, evaluate: Evaluate) -> Floats:
    value = evaluate(expr, ctx)
    assert isinstance(value, Scalar)
    return value.values


def _string(expr: ast.Expr, ctx: Context, evaluate: Evaluate) -> str:
    value = evaluate(expr, ctx)
    assert isinstance(value, String)
    return value.value


def _matrix(expr: ast.Expr, ctx: Context, evaluate: Evaluate) -> RangeVector:
    value = evaluate(expr, ctx)
    assert isinstance(value, RangeVector)
    return value


def _elementwise(function: Callable[[Floats], Floats]) -> Implementation:
    def apply(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
        vector = _vector(call.args[0], ctx, evaluate)
        with np.errstate(all="ignore"):
            values = function(vector.values)
        return unique(Vector([drop_name(lb) for lb in vector.labels], values, vector.present))

    return apply


def _with_scalars(function: Callable[..., tuple[Floats, Mask]]) -> Implementation:
    """A vector function with scalar arguments (clamp, round…), name dropped."""

    def apply(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
        vector = _vector(call.args[0], ctx, evaluate)
        scalars = [_scalar(arg, ctx, evaluate) for arg in call.args[1:]]
        with np.errstate(all="ignore"):
            values, present = function(vector.values, vector.present, *scalars)
        return unique(Vector([drop_name(lb) for lb in vector.labels], values, present))

    return apply


def _clamp(
    values: Floats, present: np.ndarray, low: Floats, high: Floats
) -> tuple[Floats, np.ndarray]:
    # max < min gives an empty vector at that step.
    return np.maximum(low, np.minimum(high, values)), present & ~(high < low)


def _round(values: Floats, present: Mask, to_nearest: Floats | None = None) -> tuple[Floats, Mask]:
    nearest = 1.0 if to_nearest is None else to_nearest
    inverse = 1.0 / nearest
    return np.floor(values * inverse + 0.5) / inverse, present


def _range_function(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    selector = call.args[0]
    if ctx.tier is not None and isinstance(selector, ast.MatrixSelector):
        vector = selector.vector
        ends = selectors.window_ends(ctx.effective_grid(vector.offset_us, vector.at), ctx)
        return unique_over_time(tiers.range_function(call, ctx, ends))
    matrix = _matrix(selector, ctx, evaluate)
    return unique_over_time(windows.RANGE_FUNCTIONS[call.func](matrix))


def _quantile_over_time(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    phi = _scalar(call.args[0], ctx, evaluate)
    return unique_over_time(windows.quantile_over_time(phi, _matrix(call.args[1], ctx, evaluate)))


def _predict_linear(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    matrix = _matrix(call.args[0], ctx, evaluate)
    seconds = _scalar(call.args[1], ctx, evaluate)
    return unique_over_time(windows.predict_linear(matrix, seconds))


def _absent_labels(expr: ast.Expr) -> Labels:
    """Labels of absent()'s output: the selector's equality matchers (a name
    matched twice is left out), as in Prometheus."""
    while isinstance(expr, ast.MatrixSelector):
        expr = expr.vector
    if not isinstance(expr, ast.VectorSelector):
        return ()
    found: dict[str, str] = {}
    repeated: set[str] = set()
    for matcher in expr.matchers:
        if matcher.name == METRIC_NAME:
            continue
        if matcher.name in found or matcher.name in repeated:
            repeated.add(matcher.name)
            found.pop(matcher.name, None)
            continue
        if matcher.op is ast.MatchOp.EQ:
            found[matcher.name] = matcher.value
    return tuple(sorted(found.items()))


def _absent(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    vector = _vector(call.args[0], ctx, evaluate)
    missing = np.asarray(~vector.present.any(axis=0))
    return Vector([_absent_labels(call.args[0])], np.ones((1, ctx.steps)), missing[None, :])


def _absent_over_time(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    missing = windows.absent_over_time(_matrix(call.args[0], ctx, evaluate))
    return Vector([_absent_labels(call.args[0])], np.ones((1, ctx.steps)), missing[None, :])


def _time(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    return Scalar(ctx.times / 1e6)


def _timestamp(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    """The sample's own time for a selector argument, else the step's time."""
    vector = _vector(call.args[0], ctx, evaluate)
    if vector.sample_times is not None and isinstance(call.args[0], ast.VectorSelector):
        values = vector.sample_times / 1e6
    else:
        values = np.broadcast_to(ctx.times / 1e6, vector.values.shape).copy()
    return unique(Vector([drop_name(lb) for lb in vector.labels], values, vector.present))


def _vector_of(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    values = _scalar(call.args[0], ctx, evaluate)
    return Vector([()], values[None, :].copy(), np.ones((1, ctx.steps), dtype=bool))


def _scalar_of(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    """The single element's value, NaN when there is not exactly one."""
    vector = _vector(call.args[0], ctx, evaluate)
    count = vector.present.sum(axis=0)
    values = np.where(vector.present, vector.values, 0.0).sum(axis=0)
    return Scalar(np.where(count == 1, values, np.nan))


def _keep(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    """sort/sort_desc: ordering only matters to an instant query (the engine sorts)."""
    return _vector(call.args[0], ctx, evaluate)


def _histogram_quantile(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    phi = _scalar(call.args[0], ctx, evaluate)
    vector = _vector(call.args[1], ctx, evaluate)
    groups: dict[Labels, list[tuple[float, int]]] = {}
    for row, labels in enumerate(vector.labels):
        try:
            bound = float(label_value(labels, "le"))
        except ValueError:
            continue  # series without a numeric `le` are ignored, as in Prometheus
        key = tuple(pair for pair in labels if pair[0] not in ("le", METRIC_NAME))
        groups.setdefault(key, []).append((bound, row))
    out_labels: list[Labels] = []
    out_values = np.zeros((len(groups), ctx.steps))
    out_present = np.zeros((len(groups), ctx.steps), dtype=bool)
    for out, (key, members) in enumerate(groups.items()):
        out_labels.append(key)
        bounds = np.array([bound for bound, _ in members])
        rows = [row for _, row in members]
        order = np.argsort(bounds, kind="stable")
        bounds, rows = bounds[order], [rows[i] for i in order]
        values = vector.values[rows]
        present = vector.present[rows]
        for step in np.flatnonzero(present.any(axis=0)):
            here = present[:, step]
            unique_bounds, inverse = np.unique(bounds[here], return_inverse=True)
            counts = np.zeros(len(unique_bounds))
            np.add.at(counts, inverse, values[here, step])  # coalesceBuckets
            out_values[out, step] = bucket_quantile(float(phi[step]), unique_bounds, counts)
            out_present[out, step] = True
    return unique(Vector(out_labels, out_values, out_present))


def _label_replace(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    vector = _vector(call.args[0], ctx, evaluate)
    destination, replacement, source, pattern = (
        _string(arg, ctx, evaluate) for arg in call.args[1:]
    )
    try:
        regex = anchored(pattern)
    except RegexError as exc:
        raise EvaluationError(f"invalid regular expression in label_replace(): {pattern}") from exc
    if not is_valid_label_name(destination):
        raise EvaluationError(f"invalid destination label name in label_replace(): {destination}")
    labels = []
    for lb in vector.labels:
        match = regex.match(label_value(lb, source))
        if match is None:
            labels.append(lb)
            continue
        labels.append(with_label(lb, destination, regex.expand(replacement, match)))
    return unique(Vector(labels, vector.values, vector.present))


def _label_join(call: ast.Call, ctx: Context, evaluate: Evaluate) -> Value:
    vector = _vector(call.args[0], ctx, evaluate)
    destination = _string(call.args[1], ctx, evaluate)
    separator = _string(call.args[2], ctx, evaluate)
    sources = [_string(arg, ctx, evaluate) for arg in call.args[3:]]
    if not is_valid_label_name(destination):
        raise EvaluationError(f"invalid destination label name in label_join(): {destination}")
    labels = [
        with_label(lb, destination, separator.join(label_value(lb, s) for s in sources))
        for lb in vector.labels
    ]
    return unique(Vector(labels, vector.values, vector.present))


IMPLEMENTATIONS: dict[str, Implementation] = {
    "abs": _elementwise(np.abs),
    "ceil": _elementwise(np.ceil),
    "floor": _elementwise(np.floor),
    "sqrt": _elementwise(np.sqrt),
    "exp": _elementwise(np.exp),
    "ln": _elementwise(np.log),
    "log2": _elementwise(np.log2),
    "log10": _elementwise(np.log10),
    **{name: _range_function for name in windows.RANGE_FUNCTIONS},
    "quantile_over_time": _quantile_over_time,
    "predict_linear": _predict_linear,
    "absent_over_time": _absent_over_time,
    "histogram_quantile": _histogram_quantile,
    "clamp": _with_scalars(_clamp),
    "clamp_min": _with_scalars(lambda v, p, low: (np.maximum(low, v), p)),
    "clamp_max": _with_scalars(lambda v, p, high: (np.minimum(high, v), p)),
    "round": _with_scalars(_round),
    "time": _time,
    "timestamp": _timestamp,
    "vector": _vector_of,
    "scalar": _scalar_of,
    "absent": _absent,
    "sort": _keep,
    "sort_desc": _keep,
    "label_replace": _label_replace,
    "label_join": _label_join,
}
