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
