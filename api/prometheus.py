"""Prometheus's HTTP query API, so Grafana, promtool and friends can read Vigil."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.dependencies import CallerDep, ServicesDep
from api.responses import prometheus_query, prometheus_success
from querylang.errors import BadRequest
from querylang.planner import AUTO, check_tier
from querylang.times import parse_duration, parse_time

router = APIRouter(prefix="/api/v1", tags=["prometheus"])

_MIN_TIME = "-9223372036.854775"
_MAX_TIME = "9223372036.854775"
_VERSION = {
    "version": "2.42.0",
    "revision": "vigil",
    "branch": "vigil",
    "buildUser": "vigil",
    "buildDate": "20261124-00:00:00",
    "goVersion": "python",
}


async def _params(request: Request) -> dict[str, list[str]]:
    """Query-string and form-body parameters together (Grafana POSTs forms)."""
    found: dict[str, list[str]] = {}
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            pairs += parse_qsl((await request.body()).decode(), keep_blank_values=True)
    for key, value in pairs:
        found.setdefault(key, []).append(value)
    return found


def _one(params: dict[str, list[str]], name: str, default: str | None = None) -> str:
    values = params.get(name)
    if not values:
        if default is None:
            raise BadRequest(f'invalid parameter "{name}": missing')
        return default
    return values[-1]


def _now_us() -> int:
    return time.time_ns() // 1000


@router.api_route("/query", methods=["GET", "POST"])
async def instant_query(request: Request, caller: CallerDep, services: ServicesDep) -> Response:
    """Evaluate an instant query (`query`, optional `time`, `tier`)."""
    params = await _params(request)
    now = _now_us()
    query = _one(params, "query")
    at = parse_time(_one(params, "time", "now"), now, "time")
    late = _flag(params, "include_late_data")
    tier = check_tier(_one(params, "tier", AUTO))
    tenant = str(caller.tenant.id)

    def answer() -> Response:
        return prometheus_query(
            services.queries.instant_query(
                tenant, query, at, now, include_late_data=late, tier=tier
            )
        )

    # Evaluated and encoded on a worker thread, which runs at the query priority.
    return await run_in_threadpool(answer)


@router.api_route("/query_range", methods=["GET", "POST"])
async def range_query(request: Request, caller: CallerDep, services: ServicesDep) -> Response:
    """Evaluate a range query (`query`, `start`, `end`, `step`, optional `tier`)."""
    params = await _params(request)
    now = _now_us()
    query = _one(params, "query")
    start = parse_time(_one(params, "start"), now, "start")
    end = parse_time(_one(params, "end"), now, "end")
    step = parse_duration(_one(params, "step"), "step")
    use_cache = "no-cache" not in request.headers.get("cache-control", "")
    late = _flag(params, "include_late_data")
    tier = check_tier(_one(params, "tier", AUTO))
    tenant = str(caller.tenant.id)

    def answer() -> Response:
        return prometheus_query(
            services.queries.range_query(
                tenant, query, start, end, step, now, use_cache, include_late_data=late, tier=tier
            )
        )

    # Evaluated and encoded on a worker thread, which runs at the query priority.
    return await run_in_threadpool(answer)


def _flag(params: dict[str, list[str]], name: str) -> bool:
    """A boolean parameter: true/1 or false/0 (absent: false)."""
    text = _one(params, name, "false").lower()
    if text not in ("true", "1", "false", "0"):
        raise BadRequest(f'invalid parameter "{name}": must be true or false')
    return text in ("true", "1")


def _range(params: dict[str, list[str]], now: int) -> tuple[int, int]:
    start = parse_time(_one(params, "start", _MIN_TIME), now, "start")
    end = parse_time(_one(params, "end", _MAX_TIME), now, "end")
    return start, end


@router.api_route("/series", methods=["GET", "POST"])
async def series(request: Request, caller: CallerDep, services: ServicesDep) -> Response:
    """The series `match[]` selects, as label sets."""
    params = await _params(request)
    start, end = _range(params, _now_us())
    found = await run_in_threadpool(
        services.queries.series, str(caller.tenant.id), params.get("match[]", []), start, end
    )
    return prometheus_success([dict(labels) for labels in found])


@router.api_route("/labels", methods=["GET", "POST"])
async def label_names(request: Request, caller: CallerDep, services: ServicesDep) -> Response:
    """Label names of the tenant's series (optionally those `match[]` selects)."""
    params = await _params(request)
    start, end = _range(params, _now_us())
    names = await run_in_threadpool(
        services.queries.label_names, str(caller.tenant.id), params.get("match[]", []), start, end
    )
    return prometheus_success(names)


@router.get("/label/{name}/values")
async def label_values(
    name: str, request: Request, caller: CallerDep, services: ServicesDep
) -> Response:
    """Values of one label across the tenant's series (optionally filtered)."""
    params = await _params(request)
    start, end = _range(params, _now_us())
    values = await run_in_threadpool(
        services.queries.label_values,
        str(caller.tenant.id),
        name,
        params.get("match[]", []),
        start,
        end,
    )
    return prometheus_success(values)


@router.get("/status/buildinfo")
async def buildinfo() -> Response:
    """Build information, in Prometheus's shape (Grafana reads the version)."""
    return prometheus_success(_VERSION)
