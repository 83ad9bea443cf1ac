"""What `explain=true` shows of a query: its plan and the SQL it ran."""

from __future__ import annotations

from dataclasses import dataclass, field

from querylang.compiler import Statement
from querylang.planner import Plan


@dataclass
class Explanation:
    """What `explain=true` shows: the plan and every statement run."""

    plan: Plan | None = None
    statements: list[Statement] = field(default_factory=list)
