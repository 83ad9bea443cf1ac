"""Which PromQL range functions a rollup tier answers, and from which bucket columns
(the planner decides with it, evaluator/tiers.py computes with it)."""

from __future__ import annotations

MIDDLE_STREAMS = {
    "sum_over_time": ("sum", "sum_over_time"),
    "count_over_time": ("samples", "sum_over_time"),
    "min_over_time": ("min", "min_over_time"),
    "max_over_time": ("max", "max_over_time"),
    "present_over_time": ("samples", "present_over_time"),
}
"""Functions answered by one column at bucket middles: (column, raw function)."""

COUNTER_COLUMNS = (
    "first_time",
    "first_value",
    "last_time",
    "last_value",
    "reset_correction",
    "samples",
)

TIER_FUNCTIONS = frozenset({*MIDDLE_STREAMS, "avg_over_time", "last_over_time", "rate", "increase"})
"""Range functions a rollup tier answers."""
