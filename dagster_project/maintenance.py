"""What the background jobs keep the store by, as the composition root (vigil.wiring)
hands it to them: when rollup buckets are settled, how much one run does, retention."""

from __future__ import annotations

from dataclasses import dataclass

from storage.retention import RetentionDefaults


@dataclass(frozen=True)
class Maintenance:
    """The rollup, repair and retention jobs' settings, in the domain's units."""

    settle_us: int
    """How long after a 1m bucket ends before it is rolled up."""
    max_buckets_per_run: int
    """Most buckets of one tier a rollup run materialises."""
    repair_batch: int
    """Most dirty (tenant, metric, minute) rows one repair transaction recomputes."""
    repair_batches_per_run: int
    """Repair transactions one run chains while the log has more."""
    retention: RetentionDefaults
