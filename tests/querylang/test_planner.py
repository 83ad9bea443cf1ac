"""The planner's tier choice, table-driven and without a database: each case names a
query, its grid, what storage holds (watermarks, retention, dirty buckets, the raw
estimate) and the tier of every run of steps it must get."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from querylang.errors import BadRequest
from querylang.parser import parse
from querylang.planner import Plan, Storage, TierCoverage, plan
from querylang.timegrid import TimeGrid

S = 1_000_000
M = 60 * S
H = 60 * M
D = 24 * H
NOW = 1_000 * D  # midnight, so every tier's bucket ends line up with it
LOOKBACK = 5 * M


def coverage(
    raw_retention: int | None = 2 * D,
    built: int = NOW - 2 * M,
    hour_built: int = NOW - H,
    day_built: int = NOW - D,
) -> list[TierCoverage]:
    return [
        TierCoverage("raw", 0, raw_retention, None),
        TierCoverage("1m", M, 14 * D, built),
        TierCoverage("1h", H, 90 * D, hour_built),
        TierCoverage("1d", D, 730 * D, day_built),
    ]


@dataclass(frozen=True)
class Case:
    name: str
    query: str
    start: int
    step: int
    steps: int
    want: list[tuple[str, int]]
    """(tier, steps) of each segment, in order."""
    tier: str = "auto"
    estimate: int = 10**12
    budget: int = 50_000_000
    dirty: list[int] = field(default_factory=list)
    raw_retention: int | None = 2 * D
    note: str | None = None
    """A substring one of the plan's approximations must contain."""


CASES = [
    Case(
        "a 30-minute dashboard within the raw budget stays exact",
        "max by (region) (avg_over_time(load[5m]))",
        NOW - 32 * M,
        M,
        31,
        [("raw", 31)],
        estimate=20_000_000,
    ),
    Case(
        "the same range over the budget reads the 1m tier up to its watermark",
        "max by (region) (avg_over_time(load[5m]))",
        NOW - 32 * M,
        M,
        31,
        [("1m", 31)],
    ),
    Case(
        "past raw retention the budget does not matter",
        "sum_over_time(load[1h])",
        NOW - 10 * D,
        H,
        24,
        [("1h", 24)],
        estimate=1,
    ),
    Case(
        "raw retention unlimited and cheap: raw",
        "sum_over_time(load[1h])",
        NOW - 10 * D,
        H,
        24,
        [("raw", 24)],
        estimate=1,
        raw_retention=None,
    ),
    Case(
        "steps finer than every tier read raw",
        "load",
        NOW - H,
        15 * S,
        61,
        [("raw", 61)],
    ),
    Case(
        "past the 1m watermark the range splits to raw",
        "sum_over_time(load[5m])",
        NOW - 10 * M,
        M,
        11,
        [("1m", 9), ("raw", 2)],
    ),
    Case(
        "steps reading a dirty 1m bucket read raw, the others the tier",
        "sum_over_time(load[5m])",
        NOW - 60 * M,
        M,
        41,
        # sum_over_time(x[5m]) reads (t - 5m, t]; one bucket of slack each side.
        [("1m", 11), ("raw", 7), ("1m", 23)],
        dirty=[NOW - 48 * M],
        note="late samples",
    ),
    Case(
        "a dirty minute stales the hour holding it; the clean 1m tier answers around it",
        "sum_over_time(load[1h])",
        NOW - 30 * H,
        H,
        24,
        [("1h", 21), ("1m", 1), ("raw", 1), ("1m", 1)],
        dirty=[NOW - 9 * H + 30 * M],
        note="late samples",
    ),
    Case(
        "tier=raw reads raw however large",
        "sum_over_time(load[1h])",
        NOW - 30 * H,
        H,
        24,
        [("raw", 24)],
        tier="raw",
    ),
    Case(
        "tier=1m is used where an hour step would pick 1h",
        "sum_over_time(load[1h])",
        NOW - 30 * H,
        H,
        24,
        [("1m", 24)],
        tier="1m",
    ),
    Case(
        "a forced tier falls back to raw where it is not built",
        "sum_over_time(load[1h])",
        NOW - 5 * H,
        H,
        6,
        [("1h", 5), ("raw", 1)],
        tier="1h",
        estimate=1,
    ),
    Case(
        "a function the tiers cannot answer reads raw",
        "quantile_over_time(0.5, load[1h])",
        NOW - 30 * H,
        H,
        24,
        [("raw", 24)],
    ),
    Case(
        "an instant query over the budget reads the tier of its range window",
        "avg_over_time(load[1d])",
        NOW - D,
        0,
        1,
        [("1d", 1)],
    ),
]


def _plan(case: Case) -> Plan:
    storage = Storage(
        coverage(case.raw_retention),
        raw_samples=lambda: case.estimate,
        dirty_buckets=lambda: case.dirty,
        raw_sample_budget=case.budget,
    )
    grid = TimeGrid(case.start, case.step, case.steps)
    return plan(parse(case.query), grid, storage, NOW, LOOKBACK, tier=case.tier)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_tier_choice(case: Case) -> None:
    chosen = _plan(case)
    assert [(segment.tier, segment.steps) for segment in chosen.segments] == case.want
    if case.note is not None:
        assert any(case.note in note for note in chosen.approximations), chosen.approximations


def test_the_estimate_and_dirty_log_are_read_only_when_they_matter() -> None:
    def fail() -> int:
        raise AssertionError("not needed")

    storage = Storage(coverage(), raw_samples=fail, dirty_buckets=lambda: [], raw_sample_budget=1)
    chosen = plan(parse("load"), TimeGrid(NOW - 30 * D, H, 10), storage, NOW, LOOKBACK)
    assert chosen.tiers == ("1h",)  # raw retention does not cover it: no estimate needed
    storage = Storage(coverage(), raw_samples=fail, dirty_buckets=fail, raw_sample_budget=1)
    fine = plan(parse("rate(load[5m])"), TimeGrid(NOW - H, 15 * S, 241), storage, NOW, LOOKBACK)
    assert fine.tiers == ("raw",)  # steps finer than every tier: nothing to weigh
    assert plan(parse("load"), TimeGrid(NOW, 0, 1), storage, NOW, LOOKBACK, tier="raw").tiers == (
        "raw",
    )


@pytest.mark.parametrize(
    ("query", "tier", "message"),
    [
        ("rate(load[5m])[1h:1m]", "1m", "the 1m tier cannot answer this query: a subquery"),
        ("load", "5m", "is not one of raw, 1m, 1h, 1d, auto"),
        ("quantile_over_time(0.5, load[1h])", "1h", "needs every raw sample"),
    ],
)
def test_a_tier_that_cannot_answer_is_refused(query: str, tier: str, message: str) -> None:
    storage = Storage(coverage(), lambda: 0, lambda: [], 0)
    with pytest.raises(BadRequest, match=message):
        plan(parse(query), TimeGrid(NOW - H, M, 61), storage, NOW, LOOKBACK, tier=tier)
