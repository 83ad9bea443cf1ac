"""Read-only SQL for tenants: `POST /v1/sql` over the `samples` and `series` views."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from api.bodies import read_body
from api.dependencies import CallerDep, ServicesDep
from api.responses import SqlAnswer, sql_answer
from querylang.errors import BadRequest
from querylang.sql_guard import MAX_SQL_CHARS, run_sql

router = APIRouter(tags=["sql"])

# The statement is at most MAX_SQL_CHARS characters; JSON escapes may double them.
_MAX_BODY_BYTES = 8 * MAX_SQL_CHARS


class SqlRequest(BaseModel):
    """The body of `POST /v1/sql` as JSON."""

    sql: str = Field(description="One SELECT over the views samples and series.")


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
    return sql_answer(rows)


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
