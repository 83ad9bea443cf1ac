"""Floats as Prometheus prints them (Go's `strconv.FormatFloat(v, 'f', -1, 64)`)."""

from __future__ import annotations

import math

import numpy as np


def format_value(value: float) -> str:
    """Shortest round-trip digits in positional notation; `NaN`, `+Inf`, `-Inf`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    if "e" in text:
        return np.format_float_positional(value, unique=True, trim="-")
    return text[:-2] if text.endswith(".0") else text


def format_values(values: np.ndarray) -> list[str]:
    """`format_value` of many values: `repr` does the common case (finite values whose
    repr has no exponent) in C; only the rest take the slow path."""
    texts = list(map(repr, values.tolist()))
    magnitude = np.abs(values)
    plain = np.isfinite(values) & ((magnitude == 0) | ((magnitude >= 1e-4) & (magnitude < 1e16)))
    if plain.all():
        return [text[:-2] if text.endswith(".0") else text for text in texts]
    return [
        (text[:-2] if text.endswith(".0") else text) if ok else format_value(value)
        for text, ok, value in zip(texts, plain.tolist(), values.tolist(), strict=True)
    ]
