"""Read-only SQL for tenants: `POST /v1/sql` over the `samples` and `series` views."""

from __future__ import annotations

import math
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from api.bodies import read_body
from api.dependencies import CallerDep, ServicesDep
from querylang.errors import BadRequest
from querylang.evaluator.formatting import format_value
from querylang.sql_guard import MAX_SQL_CHARS, run_sql
from storage.sql_console import SqlRows

router = APIRouter(tags=["sql"])

# The statement is at most MAX_SQL_CHARS characters; JSON escapes may double them.
_MAX_BODY_BYTES = 8 * MAX_SQL_CHARS


class SqlRequest(BaseModel):
    """The body of `POST /v1/sql` as JSON."""

    sql: str = Field(description="One SELECT over the views samples and series.")


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


@router.post(
    "/v1/sql",
    response_model=SqlAnswer,
    responses={400: {"description": "Rejected: the error message says why"}},
)
async def sql(request: Request, caller: CallerDep, found: ServicesDep) -> Response:
    """Run one read-only SELECT as the caller's tenant: JSON {"sql": …} or text/plain."""
    text = _statement(
        await read_body(request, _MAX_BODY_BYTES, BadRequest),
        request.headers.get("content-type") or "",
    )
    rows = await run_in_threadpool(run_sql, found.sql_console, caller.tenant.id, text)
    return Response(orjson.dumps(_answer(rows)), media_type="application/json")


def _statement(body: bytes, content_type: str) -> str:
    """The SQL text of a JSON or text/plain body."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "text/plain":
        try:
            return body.decode()
        except UnicodeDecodeError:
            raise BadRequest("the body is not UTF-8 text") from None
    if media_type not in ("", "application/json"):
        raise BadRequest(
            f'unsupported content type {media_type}: send JSON {{"sql": "..."}} or text/plain'
        )
    try:
        return SqlRequest.model_validate_json(body).sql
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise BadRequest(
            f'the body must be JSON {{"sql": "..."}}: {where + ": " if where else ""}'
            f"{problem['msg']}"
        ) from None


def _answer(rows: SqlRows) -> dict[str, Any]:
    return {
        "columns": [{"name": column.name, "type": column.type} for column in rows.columns],
        "rows": [[_json_value(value) for value in row] for row in rows.rows],
        "row_count": len(rows.rows),
        "truncated": rows.truncated,
    }


def _json_value(value: object) -> Any:
    """A database value as JSON: numbers as numbers (non-finite ones as Prometheus
    writes them), times as ISO 8601, jsonb as itself, arrays and records as lists."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else format_value(value)
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
        return [_json_value(item) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, UUID):
        return str(value)
    return str(value)
