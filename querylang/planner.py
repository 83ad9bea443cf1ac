"""The planner: which storage tier serves each step of a query, and which raw time
range a query reads.

The rule, in order:

1. A forced tier (`tier=raw|1m|1h|1d`) or `include_late_data` (= raw) is obeyed; a
   rollup tier that cannot answer the expression is an error, and steps a forced tier
   does not cover (not built yet, past its retention, or awaiting repair) read the
   finest tier that covers them, normally raw samples.
2. Exact when affordable: with `tier=auto`, a query reads raw samples throughout when
   raw retention covers everything it reads and its estimated raw samples (matching
   series x span / nominal sample interval, per selector) stay within the budget
   (`query.raw_sample_budget`).
3. Otherwise, per step, the coarsest tier that (a) gives at least `points_per_step`
   buckets per step (per the smallest range window for an instant query) and no
   bucket wider than any range window, (b) is built up to what the step reads (its
   watermark), (c) still holds what the step reads back to (its retention), and (d)
   holds no bucket the step reads that late samples made stale (`vigil.rollup_dirty`
   for the query's metrics, until the repair job rewrites it); where no tier fits
   (a), the finest tier that covers the step. Runs of steps on the same tier become
   segments, so a 30-day range can read 1h rollups for its past and raw samples for
   the minutes not rolled up yet (or awaiting repair).

Expressions a tier cannot answer (see tier_functions.py) read raw samples throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from querylang import ast
from querylang.errors import BadRequest
from querylang.tier_functions import TIER_FUNCTIONS
from querylang.timegrid import TimeGrid
from storage.tiers import RAW, TIER_NAMES

AUTO = "auto"
TIER_CHOICES = (*TIER_NAMES, AUTO)
"""What a caller may ask for: a tier by name, or the planner's choice."""


@dataclass(frozen=True)
class TierCoverage:
    """What one tier holds now: bucket width (0 for raw), how far back it keeps data
    (None: no limit), and the last bucket end it is built to (None for raw)."""

    name: str
    width_us: int
    retention_us: int | None
    built_to_us: int | None


@dataclass(frozen=True)
class Segment:
    """Steps first_step … first_step + steps - 1 of the grid, served by `tier`."""

    tier: str
    first_step: int
    steps: int


@dataclass(frozen=True)
class Plan:
    """The tiers chosen, why, and where their answers are approximate (with bounds),
    as `explain` and every response show them."""

    segments: tuple[Segment, ...]
    reason: str
    approximations: tuple[str, ...] = ()

    @property
    def tiers(self) -> tuple[str, ...]:
        """The tiers used, in step order, each once."""
        return tuple(dict.fromkeys(segment.tier for segment in self.segments))


@dataclass(frozen=True)
class Storage:
    """What the planner knows of storage for one query, finest tier first. The two
    callables cost a catalog query each, so the planner calls them only when the
    answer can change its choice."""

    coverage: Sequence[TierCoverage]
    raw_samples: Callable[[], int]
    """An estimate of the raw samples the query reads."""
    dirty_buckets: Callable[[], Sequence[int]]
    """The ends of the 1m buckets, among those the query reads, that late samples made
    stale for the query's metrics (awaiting repair)."""
    raw_sample_budget: int = 0


def raw_plan(steps: int, reason: str) -> Plan:
    """Every step from raw samples."""
    return Plan((Segment(RAW.name, 0, steps),), reason)


def check_tier(tier: str) -> str:
    """`tier` if callers may ask for it, else BadRequest naming the choices."""
    if tier not in TIER_CHOICES:
        raise BadRequest(
            f'invalid parameter "tier": {tier!r} is not one of {", ".join(TIER_CHOICES)}'
        )
    return tier


def plan(
    expr: ast.Expr,
    grid: TimeGrid,
    storage: Storage,
    now_us: int,
    lookback_us: int,
    points_per_step: float = 1.0,
    tier: str = AUTO,
) -> Plan:
    """The tier of every step of `expr` evaluated on `grid`."""
    check_tier(tier)
    if tier == RAW.name:
        return raw_plan(grid.count, "tier=raw: raw samples throughout")
    reads = _Reads(lookback_us)
    refusal = reads.walk(expr)
    if refusal is not None:
        if tier != AUTO:
            raise BadRequest(f"the {tier} tier cannot answer this query: {refusal}")
        return raw_plan(grid.count, f"raw samples: {refusal}")
    times = grid.times_us
    coverage = storage.coverage
    spacing = grid.step_us if grid.step_us > 0 else min(reads.ranges, default=0)
    choice = _Choice(reads, grid, coverage, now_us, spacing, points_per_step, tier)
    chosen, stale_steps = choice.tiers(np.empty(0, dtype=np.int64))
    if not chosen.any():  # raw throughout, whatever the dirty log and the budget say
        return _segmented(chosen, coverage, times, choice.rule(), [])
    if tier == AUTO and bool(choice.covered(0).all()):
        estimate = storage.raw_samples()
        if estimate <= storage.raw_sample_budget:
            return raw_plan(
                grid.count,
                f"raw samples (exact): about {estimate:,} raw samples to read, within the "
                f"budget of {storage.raw_sample_budget:,}, and raw retention covers them",
            )
    dirty = np.unique(np.asarray(storage.dirty_buckets(), dtype=np.int64))
    if len(dirty):
        chosen, stale_steps = choice.tiers(dirty)
    used = [covering for index, covering in enumerate(coverage) if (chosen == index).any()]
    notes = [note for tier in used if tier.width_us for note in reads.approximations(tier, grid)]
    repaired = int((stale_steps & (chosen == 0)).sum())
    if repaired:
        notes.append(
            f"raw: {repaired} step(s) read raw samples because late samples made the rollup "
            "buckets they read stale until the repair job rewrites them"
        )
    return _segmented(chosen, coverage, times, choice.rule(), notes)


class _Choice:
    """The per-step tier choice of rule 3 (and of a forced rollup tier)."""

    def __init__(
        self,
        reads: _Reads,
        grid: TimeGrid,
        coverage: Sequence[TierCoverage],
        now_us: int,
        spacing: int,
        points_per_step: float,
        tier: str,
    ) -> None:
        self._reads = reads
        self._times = grid.times_us
        self._coverage = coverage
        self._now_us = now_us
        self._spacing = spacing
        self._points_per_step = points_per_step
        self._tier = tier

    def covered(self, index: int) -> np.ndarray:
        """Per step, whether tier `index` is built and retained for what the step reads."""
        tier, times, reads = self._coverage[index], self._times, self._reads
        covered = np.ones(len(times), dtype=bool)
        if tier.built_to_us is not None:
            covered &= times - reads.forward_us <= tier.built_to_us
        if tier.retention_us is not None:
            covered &= times - reads.back_us >= self._now_us - tier.retention_us
        return covered

    def tiers(self, dirty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per step, the index of its tier in the coverage, and whether a tier it
        would have read was left out for buckets awaiting repair (`dirty`: 1m ends)."""
        times, reads = self._times, self._reads
        chosen = np.full(len(times), -1)
        fallback = np.full(len(times), -1)
        stale_steps = np.zeros(len(times), dtype=bool)
        for index, tier in enumerate(self._coverage):
            covered = self.covered(index)
            if tier.width_us:
                stale = _reads_stale(tier, dirty, times - reads.back_us, times - reads.forward_us)
                stale_steps |= covered & stale
                covered &= ~stale
            if self._tier != AUTO:
                fits = tier.name == self._tier
            else:
                fits = tier.width_us == 0 or (
                    tier.width_us * self._points_per_step <= self._spacing
                    and tier.width_us <= min(reads.ranges, default=tier.width_us)
                )
            if fits:
                chosen[covered] = index
            fallback[covered & (fallback < 0)] = index
        return np.where(chosen >= 0, chosen, np.where(fallback >= 0, fallback, 0)), stale_steps

    def rule(self) -> str:
        """The rule as the plan's reason states it."""
        if self._tier != AUTO:
            return f"tier={self._tier} where it covers the step, else the finest tier that does"
        return (
            f"per step, the coarsest tier with at least {self._points_per_step:g} bucket(s) "
            f"per {_duration(self._spacing)}, buckets no wider than any range window, a "
            "watermark and retention covering what the step reads and no bucket awaiting "
            "repair of late samples (else the finest tier that covers it)"
        )


def _segmented(
    chosen: np.ndarray,
    coverage: Sequence[TierCoverage],
    times: np.ndarray,
    rule: str,
    notes: list[str],
) -> Plan:
    """The plan of a per-step choice: runs of steps on one tier, and why."""
    segments = []
    start = 0
    for step in range(1, len(chosen) + 1):
        if step == len(chosen) or chosen[step] != chosen[start]:
            segments.append(Segment(coverage[int(chosen[start])].name, start, step - start))
            start = step
    reason = f"{rule}: " + ", ".join(
        f"{segment.tier} for {segment.steps} step(s) from "
        f"{_instant(int(times[segment.first_step]))}"
        for segment in segments
    )
    return Plan(tuple(segments), reason, tuple(dict.fromkeys(notes)))


def _reads_stale(
    tier: TierCoverage, dirty_1m: np.ndarray, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """Per step, whether a `tier` bucket it may read, around [low, high] (one bucket
    of slack each side: instant selectors and short windows widen to a bucket), holds
    a dirty 1m bucket."""
    if not len(dirty_1m):
        return np.zeros(len(low), dtype=bool)
    width = tier.width_us
    # A dirty 1m bucket (b - 1m, b] stales the tier bucket ending at ceil(b / width).
    stale_ends = np.unique(-(-dirty_1m // width) * width)
    # A step reads the tier buckets ending in (low - width, high + width].
    first = np.searchsorted(stale_ends, low - width, side="right")
    return (first < len(stale_ends)) & (
        stale_ends[np.minimum(first, len(stale_ends) - 1)] <= high + width
    )


class _Reads:
    """What an expression reads, relative to each step time: how far back and forward,
    its range windows, and the rollup-answered functions it uses."""

    def __init__(self, lookback_us: int) -> None:
        self.lookback_us = lookback_us
        self.back_us = 0
        self.forward_us = 0
        self.ranges: list[int] = []
        self.functions: set[str] = set()
        self.instant = False
        self.offsets: set[int] = set()

    def walk(self, expr: ast.Expr) -> str | None:
        """None when a rollup tier can answer `expr`, else why not."""
        match expr:
            case ast.VectorSelector():
                if expr.at is not None:
                    return "the @ modifier"
                self.instant = True
                self._read(expr.offset_us, self.lookback_us)
                return None
            case ast.MatrixSelector():
                return "a range vector outside a rollup function"
            case ast.Subquery():
                return "a subquery"
            case ast.Call() if expr.func in TIER_FUNCTIONS:
                selector = expr.args[0]
                if not isinstance(selector, ast.MatrixSelector):
                    return f"{expr.func} of a subquery"
                if selector.vector.at is not None:
                    return "the @ modifier"
                self.functions.add(expr.func)
                self.ranges.append(selector.range_us)
                self._read(selector.vector.offset_us, selector.range_us)
                return None
            case ast.Call():
                if any(isinstance(arg, ast.MatrixSelector | ast.Subquery) for arg in expr.args):
                    return f"{expr.func} needs every raw sample"
                if expr.func == "histogram_quantile":
                    self.functions.add(expr.func)
                return self._walk_all(expr.args)
            case ast.UnaryExpr():
                return self.walk(expr.expr)
            case ast.BinaryExpr():
                return self._walk_all((expr.lhs, expr.rhs))
            case ast.AggregateExpr():
                parts = (expr.expr,) if expr.param is None else (expr.param, expr.expr)
                return self._walk_all(parts)
        return None

    def _walk_all(self, exprs: Sequence[ast.Expr]) -> str | None:
        for part in exprs:
            refusal = self.walk(part)
            if refusal is not None:
                return refusal
        return None

    def _read(self, offset_us: int, span_us: int) -> None:
        self.back_us = max(self.back_us, offset_us + span_us)
        self.forward_us = min(self.forward_us, offset_us)
        self.offsets.add(offset_us)

    def approximations(self, tier: TierCoverage, grid: TimeGrid) -> list[str]:
        """Where answers from `tier` may differ from raw ones, and by how much."""
        width = _duration(tier.width_us)
        notes = []
        if self.instant and tier.width_us > self.lookback_us:
            notes.append(
                f"{tier.name}: instant selectors look back {width} (one bucket) instead of "
                f"{_duration(self.lookback_us)}, so a series stays visible up to {width} "
                "after its last sample"
            )
        for range_us in sorted(set(self.ranges)):
            if range_us < tier.width_us:
                notes.append(
                    f"{tier.name}: [{_duration(range_us)}] windows are widened to one "
                    f"{width} bucket"
                )
            elif range_us % tier.width_us:
                notes.append(
                    f"{tier.name}: [{_duration(range_us)}] is not a whole number of {width} "
                    "buckets; windows take the buckets whose middle they contain (up to half "
                    "a bucket more or less at each edge)"
                )
        aligned = all(
            (grid.start_us - offset) % tier.width_us == 0 for offset in self.offsets
        ) and (grid.count == 1 or grid.step_us % tier.width_us == 0)
        if not aligned:
            notes.append(
                f"{tier.name}: steps do not fall on {width} bucket ends; each step reads "
                "the buckets ending by then (up to one bucket of samples earlier than raw)"
            )
        if self.functions - {"rate", "increase", "histogram_quantile"}:
            notes.append(
                f"{tier.name}: *_over_time windows hold whole buckets, (t - range, t] as in "
                "Prometheus 3; Prometheus 2.x also counts a sample lying exactly on t - range"
            )
        if self.functions & {"rate", "increase"}:
            notes.append(
                f"{tier.name}: rate/increase count the exact increase between each window's "
                "first and last sample in whole buckets; extrapolation uses the buckets' "
                "sample counts, so a window edge cutting a bucket shifts it by up to one "
                "bucket's samples"
            )
        if "histogram_quantile" in self.functions:
            notes.append(
                f"{tier.name}: histogram_quantile interpolates within le buckets as on raw "
                "samples (error bounded by the width of the bucket holding the quantile), "
                "from the rates above"
            )
        return notes


def _instant(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def _duration(us: int) -> str:
    """µs as a short duration: 1h, 5m, 90s."""
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000)):
        if us and us % size == 0:
            return f"{us // size}{unit}"
    return f"{us / 1e6:g}s"


@dataclass(frozen=True)
class SelectorRead:
    """The sample times one selector reads over a whole query: [start, end]."""

    selector: ast.VectorSelector
    start_us: int
    end_us: int


@dataclass(frozen=True)
class Extent:
    """The sample times a query reads, and the metrics it reads them from (None: a
    selector without a fixed metric name, so any metric of the tenant)."""

    start_us: int
    end_us: int
    metrics: frozenset[str | None]


def selector_reads(
    expr: ast.Expr, start_us: int, end_us: int, lookback_us: int
) -> list[SelectorRead]:
    """What each selector of `expr` reads when it is evaluated at steps in [start, end]."""
    reads: list[SelectorRead] = []
    _walk(expr, start_us, end_us, start_us, end_us, lookback_us, reads)
    return reads


def extent(expr: ast.Expr, start_us: int, end_us: int, lookback_us: int) -> Extent:
    """Which samples evaluating `expr` at steps in [start, end] may read, so a late
    write into that range knows which cached results it invalidates."""
    reads = selector_reads(expr, start_us, end_us, lookback_us)
    if not reads:
        return Extent(start_us, end_us, frozenset())
    return Extent(
        min(read.start_us for read in reads),
        max(read.end_us for read in reads),
        frozenset(read.selector.metric for read in reads),
    )


def _window(
    offset_us: int, at: ast.AtModifier | None, low: int, high: int, query: tuple[int, int]
) -> tuple[int, int]:
    if at is not None:
        pinned = {"time": at.time_us, "start": query[0], "end": query[1]}[at.kind]
        low = high = pinned
    return low - offset_us, high - offset_us


def _walk(
    expr: ast.Expr,
    low: int,
    high: int,
    query_start: int,
    query_end: int,
    lookback_us: int,
    reads: list[SelectorRead],
) -> None:
    query = (query_start, query_end)
    match expr:
        case ast.VectorSelector():
            first, last = _window(expr.offset_us, expr.at, low, high, query)
            reads.append(SelectorRead(expr, first - lookback_us, last))
        case ast.MatrixSelector():
            vector = expr.vector
            first, last = _window(vector.offset_us, vector.at, low, high, query)
            reads.append(SelectorRead(vector, first - expr.range_us, last))
        case ast.Subquery():
            first, last = _window(expr.offset_us, expr.at, low, high, query)
            _walk(expr.expr, first - expr.range_us, last, *query, lookback_us, reads)
        case ast.UnaryExpr():
            _walk(expr.expr, low, high, *query, lookback_us, reads)
        case ast.BinaryExpr():
            _walk(expr.lhs, low, high, *query, lookback_us, reads)
            _walk(expr.rhs, low, high, *query, lookback_us, reads)
        case ast.AggregateExpr():
            if expr.param is not None:
                _walk(expr.param, low, high, *query, lookback_us, reads)
            _walk(expr.expr, low, high, *query, lookback_us, reads)
        case ast.Call():
            for arg in expr.args:
                _walk(arg, low, high, *query, lookback_us, reads)
