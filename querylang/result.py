"""What a query returns: the wire-independent result the API and the cache share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

Labels = tuple[tuple[str, str], ...]
"""A label set sorted by name, `__name__` included when the series keeps it."""


@dataclass(frozen=True)
class Series:
    """One output series: its labels and its points at step-aligned times."""

    labels: Labels
    times_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


@dataclass(frozen=True)
class QueryResult:
    """A range (or instant) query's answer.

    `kind` is the PromQL type: a range query always answers "matrix"; an instant
    query answers "vector", "scalar", "string" or "matrix" (a range selector).
    For "scalar" and "string", `series` holds one unlabelled series (string values
    are in `text`). `tiers` names the storage tiers that served it, and `notes`
    where their answers are approximate, with the bound.
    """

    kind: Literal["matrix", "vector", "scalar", "string"]
    series: list[Series]
    tiers: tuple[str, ...] = ("raw",)
    text: str = ""
    warnings: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())
