"""The API's wire shapes, and the one place domain results become them: Prometheus's
envelopes and result encodings, Vigil's `/v1` bodies (queries, ingestion, SQL,
retention) and error bodies, and values as JSON (NaN and ±Inf spelled as Prometheus
spells them). Routers and the CLI's `--json` call these; nothing else builds a body."""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from fastapi import Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ingest.intake import IntakeResult
from ingest.validation import REJECTION_CODES
from querylang.evaluator.formatting import format_value, format_values
from querylang.explanation import Explanation
from querylang.planner import Plan
from querylang.result import QueryResult
from storage.retention import RetentionDefaults, RetentionOverride, retention_text
from storage.sql_console import SqlRows
from storage.tiers import TIER_NAMES

MAX_LISTED_REJECTIONS = 100
"""A 202 lists at most this many rejections; its counts are always complete."""

# Values


def json_number(value: float) -> float | str:
    """A finite value as a JSON number; NaN and ±Inf spelled as Prometheus spells them."""
    return value if math.isfinite(value) else format_value(value)


def _statement_param(value: Any) -> Any:
    """A bind parameter of an explained statement as JSON."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    return value


def _sql_value(value: object) -> Any:
    """A database value as JSON: numbers as numbers (non-finite ones as Prometheus
    writes them), times as ISO 8601, jsonb as itself, arrays and records as lists."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return "NaN" if value.is_nan() else ("+Inf" if value > 0 else "-Inf")
        if value == value.to_integral_value() and abs(value) < 2**63:
            return int(value)
        return float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict):
        return value  # jsonb: JSON already, and never NaN
    if isinstance(value, list | tuple):
        return [_sql_value(item) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, UUID):
        return str(value)
    return str(value)


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


# Errors


def error_response(
    status: int, code: str, message: str, retry_after_s: float | None = None
) -> JSONResponse:
    """Vigil's error body: {"error": {"code", "message"}}, with Retry-After when given."""
    headers = {}
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def prometheus_error(status: int, error_type: str, message: str) -> JSONResponse:
    """Prometheus's HTTP API error envelope."""
    return JSONResponse(
        {"status": "error", "errorType": error_type, "error": message}, status_code=status
    )


# Prometheus's HTTP API


def prometheus_success(data: Any) -> Response:
    """Prometheus's success envelope around `data`."""
    return _json({"status": "success", "data": data})


def prometheus_query(result: QueryResult) -> Response:
    """A query's answer, with the rollup tiers that served it as `X-Vigil-Tiers` and
    their approximations as Prometheus's info annotations (`infos`), which Grafana
    shows beside the panel."""
    if result.kind == "matrix":
        response = _prometheus_matrix(result)
    else:
        body: dict[str, Any] = {"status": "success", "data": _prometheus_data(result)}
        if result.notes:
            body["infos"] = list(result.notes)
        response = _json(body)
    response.headers["X-Vigil-Tiers"] = ",".join(result.tiers)
    return response


def _prometheus_data(result: QueryResult) -> dict[str, Any]:
    """A scalar, string or vector result in Prometheus's `data` shape for its type."""
    if result.kind == "scalar":
        series = result.series[0]
        return {
            "resultType": "scalar",
            "result": [int(series.times_us[0]) / 1e6, format_value(float(series.values[0]))],
        }
    if result.kind == "string":
        return {
            "resultType": "string",
            "result": [int(result.series[0].times_us[0]) / 1e6, result.text],
        }
    if result.kind == "vector":
        return {
            "resultType": "vector",
            "result": [
                {
                    "metric": dict(s.labels),
                    "value": [int(s.times_us[0]) / 1e6, format_value(float(s.values[0]))],
                }
                for s in result.series
            ],
        }
    raise AssertionError(result.kind)


def _prometheus_matrix(result: QueryResult) -> Response:
    """A matrix answer, its JSON written directly: one string per series instead of
    a Python list per point keeps large answers fast and out of the garbage
    collector's way (24k points: 12 ms instead of 15-60 ms)."""
    parts = []
    for series in result.series:
        times = map(repr, (series.times_us / 1e6).tolist())
        points = ",".join(
            f'[{t},"{v}"]' for t, v in zip(times, format_values(series.values), strict=True)
        )
        labels = orjson.dumps(dict(series.labels)).decode()
        parts.append(f'{{"metric":{labels},"values":[{points}]}}')
    body = '{"status":"success","data":{"resultType":"matrix","result":[' + ",".join(parts)
    infos = f',"infos":{orjson.dumps(list(result.notes)).decode()}' if result.notes else ""
    return Response(body + "]}" + infos + "}", media_type="application/json")


# Vigil's /v1 query shape (the seed design's)


def query_body(
    query: str,
    start_us: int,
    end_us: int,
    step_us: int,
    result: QueryResult,
    explanation: Explanation | None = None,
) -> dict[str, Any]:
    """A range query's answer: the series, the tiers that served it, their
    approximations and, when explained, the plan and every statement run."""
    body: dict[str, Any] = {
        "query": query,
        "start": start_us / 1e6,
        "end": end_us / 1e6,
        "step": step_us / 1e6,
        "tiers": list(result.tiers),
        "approximations": list(result.notes),
        "series": _series_body(result),
    }
    if explanation is not None:
        body["explain"] = {
            "plan": _plan_body(explanation.plan, start_us, step_us),
            "statements": [
                {"sql": s.sql, "params": {k: _statement_param(v) for k, v in s.params.items()}}
                for s in explanation.statements
            ],
        }
    return body


def query_response(
    query: str,
    start_us: int,
    end_us: int,
    step_us: int,
    result: QueryResult,
    explanation: Explanation | None = None,
) -> Response:
    """`query_body` as the response of `GET /v1/metrics/query`."""
    return _json(query_body(query, start_us, end_us, step_us, result, explanation))


def _series_body(result: QueryResult) -> list[dict[str, Any]]:
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
                    {"timestamp": t / 1e6, "value": json_number(v)}
                    for t, v in zip(series.times_us.tolist(), series.values.tolist(), strict=True)
                ],
            }
        )
    return body


def _plan_body(plan: Plan | None, start_us: int, step_us: int) -> dict[str, Any]:
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


# Ingestion


def _counts_by_code(result: IntakeResult) -> dict[str, int]:
    """How many samples were rejected with each code, codes sorted."""
    return dict(sorted(Counter(rejection.code for rejection in result.rejections).items()))


def ingest_accepted(result: IntakeResult) -> JSONResponse:
    """202 for a batch on the bus: how many samples were accepted, and which were
    rejected and why (the first MAX_LISTED_REJECTIONS listed, all counted)."""
    return JSONResponse(
        {
            "accepted": result.accepted,
            "rejected": len(result.rejections),
            "rejected_by_code": _counts_by_code(result),
            "rejections": [
                {"index": r.index, "code": r.code, "message": REJECTION_CODES[r.code]}
                for r in result.rejections[:MAX_LISTED_REJECTIONS]
            ],
        },
        status_code=202,
    )


def remote_write_answer(result: IntakeResult) -> Response:
    """204 when every sample is stored; else 400, which Prometheus does not retry (the
    valid samples are stored, and it must not resend the rest)."""
    if not result.rejections:
        return Response(status_code=204)
    summary = ", ".join(f"{count} {code}" for code, count in _counts_by_code(result).items())
    return error_response(
        400, "samples_rejected", f"accepted {result.accepted} samples, rejected {summary}"
    )


# SQL


class SqlColumnOut(BaseModel):
    """A result column."""

    name: str
    type: str = Field(description="PostgreSQL type name, e.g. timestamptz, float8, jsonb.")


class SqlAnswer(BaseModel):
    """The rows of a statement; `truncated` means the row limit cut it short."""

    columns: list[SqlColumnOut]
    rows: list[list[Any]]
    row_count: int
    truncated: bool


def sql_answer(rows: SqlRows) -> Response:
    """A statement's rows in SqlAnswer's shape (written directly: rows can be many)."""
    return _json(
        {
            "columns": [{"name": column.name, "type": column.type} for column in rows.columns],
            "rows": [[_sql_value(value) for value in row] for row in rows.rows],
            "row_count": len(rows.rows),
            "truncated": rows.truncated,
        }
    )


# Retention


class OverrideOut(BaseModel):
    """One of the tenant's overrides."""

    tier: str
    pattern: str
    retention: str = Field(description="As a duration, e.g. 30d.")
    retention_s: float
    updated_at: datetime


class RetentionOut(BaseModel):
    """The global retention of each tier, and the tenant's overrides."""

    defaults: dict[str, str] = Field(description="Each tier's retention for every tenant.")
    overrides: list[OverrideOut]


def override_out(override: RetentionOverride) -> OverrideOut:
    """One override as the API shows it."""
    return OverrideOut(
        tier=override.tier,
        pattern=override.pattern,
        retention=retention_text(override.retention),
        retention_s=override.retention.total_seconds(),
        updated_at=override.updated_at,
    )


def retention_out(defaults: RetentionDefaults, overrides: list[RetentionOverride]) -> RetentionOut:
    """The tiers' default retention and a tenant's overrides."""
    return RetentionOut(
        defaults={tier: retention_text(defaults.of(tier)) for tier in TIER_NAMES},
        overrides=[override_out(o) for o in overrides],
    )
