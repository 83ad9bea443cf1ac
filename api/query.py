"""Vigil's own query endpoint: `GET /v1/metrics/query`, in the seed design's shape."""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from starlette.concurrency import run_in_threadpool

from api.dependencies import CallerDep, ServicesDep
from api.responses import query_response
from querylang.explanation import Explanation
from querylang.planner import AUTO, check_tier
from querylang.times import parse_duration, parse_time

router = APIRouter(prefix="/v1/metrics", tags=["query"])

_DEFAULT_POINTS = 250
"""Steps a query gets when it names no step, as Grafana's default resolution."""


def default_step_us(start_us: int, end_us: int) -> int:
    """A whole-second step giving about 250 points, at least 1 s."""
    return max(1, math.ceil((end_us - start_us) / _DEFAULT_POINTS / 1e6)) * 1_000_000


@router.get("/query")
async def query(
    caller: CallerDep,
    services: ServicesDep,
    query: Annotated[str, Query(description="PromQL expression.")],
    start: Annotated[str, Query(description="Unix seconds, RFC 3339, now or -1h.")] = "-1h",
    end: Annotated[str, Query(description="Unix seconds, RFC 3339, now or -5m.")] = "now",
    step: Annotated[str | None, Query(description="Seconds or a duration (15s, 1m).")] = None,
    explain: Annotated[bool, Query(description="Also return the plan and its SQL.")] = False,
    include_late_data: Annotated[
        bool,
        Query(description="Read raw samples instead of rollups (within raw retention)."),
    ] = False,
    tier: Annotated[
        str,
        Query(description="The storage tier to read: raw, 1m, 1h, 1d, or auto (the planner's)."),
    ] = AUTO,
    cache_control: Annotated[str, Header()] = "",
) -> Response:
    """Evaluate a PromQL range query; `explain=true` adds the plan and its SQL.

    The answer names the storage tiers that served it and, where a rollup tier
    answers approximately, how (`approximations`)."""
    now = time.time_ns() // 1000
    start_us = parse_time(start, now, "start")
    end_us = parse_time(end, now, "end")
    step_us = parse_duration(step, "step") if step else default_step_us(start_us, end_us)
    tier = check_tier(tier)
    explanation = Explanation() if explain else None
    tenant = str(caller.tenant.id)
    use_cache = "no-cache" not in cache_control

    def answer() -> Response:
        result = services.queries.range_query(
            tenant,
            query,
            start_us,
            end_us,
            step_us,
            now,
            use_cache,
            explanation,
            include_late_data=include_late_data,
            tier=tier,
        )
        return query_response(query, start_us, end_us, step_us, result, explanation)

    # Evaluated and encoded on a worker thread, which runs at the query priority.
    return await run_in_threadpool(answer)
