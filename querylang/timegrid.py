"""The time grid a query is evaluated on: its steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class TimeGrid:
    """Evaluation times `start + k * step` for k < count (step 0 when count is 1)."""

    start_us: int
    step_us: int
    count: int

    @property
    def end_us(self) -> int:
        return self.start_us + self.step_us * (self.count - 1)

    @property
    def times_us(self) -> npt.NDArray[np.int64]:
        """Every evaluation time, in order."""
        return self.start_us + self.step_us * np.arange(self.count, dtype=np.int64)
