"""Vigil's own query endpoint: `GET /v1/metrics/query`, in the seed design's shape."""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Response
from starlette.concurrency import run_in_threadpool

from api.dependencies import CallerDep, ServicesDep
from querylang.evaluator.formatting import format_value
from querylang.explanation import Explanation
from querylang.planner import Plan
from querylang.result import QueryResult
from querylang.times import parse_duration, parse_time

router = APIRouter(prefix="/v1/metrics", tags=["query"])

_DEFAULT_POINTS = 250
"""Steps a query gets when it names no step, as Grafana's default resolution."""


def default_step_us(start_us: int, end_us: int) -> int:
    """A whole-second step giving about 250 points, at least 1 s."""
    return max(1, math.ceil((end_us - start_us) / _DEFAULT_POINTS / 1e6)) * 1_000_000


def _number(value: float) -> float | str:
    """A finite value as a JSON number; NaN and ±Inf spelled as Prometheus spells them."""
    return value if math.isfinite(value) else format_value(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    return value


def result_body(result: QueryResult) -> list[dict[str, Any]]:
    """Each series as {metric, labels, datapoints: [{timestamp, value}]}."""
    body = []
    for series in result.series:
        labels = dict(series.labels)
        metric = labels.pop("__name__", None)
        body.append(
            {
                "metric": metric,
                "labels": labels,
                "datapoints": [
                    {"timestamp": t / 1e6, "value": _number(v)}
                    for t, v in zip(series.times_us.tolist(), series.values.tolist(), strict=True)
                ],
            }
        )
    return body


def plan_body(plan: Plan | None, start_us: int, step_us: int) -> dict[str, Any]:
    """The plan as `explain` shows it: each segment's tier and step times (seconds)."""
    if plan is None:
        return {}
    return {
        "segments": [
            {
                "tier": segment.tier,
                "start": (start_us + segment.first_step * step_us) / 1e6,
                "end": (start_us + (segment.first_step + segment.steps - 1) * step_us) / 1e6,
                "steps": segment.steps,
            }
            for segment in plan.segments
        ],
        "reason": plan.reason,
        "approximations": list(plan.approximations),
    }


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
    cache_control: Annotated[str, Header()] = "",
) -> Response:
    """Evaluate a PromQL range query; `explain=true` adds the plan and its SQL.

    The answer names the storage tiers that served it and, where a rollup tier
    answers approximately, how (`approximations`)."""
    now = time.time_ns() // 1000
    start_us = parse_time(start, now, "start")
    end_us = parse_time(end, now, "end")
    step_us = parse_duration(step, "step") if step else default_step_us(start_us, end_us)
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
        )
        body: dict[str, Any] = {
            "query": query,
            "start": start_us / 1e6,
            "end": end_us / 1e6,
            "step": step_us / 1e6,
            "tiers": list(result.tiers),
            "approximations": list(result.notes),
            "series": result_body(result),
        }
        if explanation is not None:
            body["explain"] = {
                "plan": plan_body(explanation.plan, start_us, step_us),
                "statements": [
                    {"sql": s.sql, "params": {k: _jsonable(v) for k, v in s.params.items()}}
                    for s in explanation.statements
                ],
            }
        return Response(orjson.dumps(body), media_type="application/json")

    # Evaluated and encoded on a worker thread, which runs at the query priority.
    return await run_in_threadpool(answer)
