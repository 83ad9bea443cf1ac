"""The one place domain errors become HTTP statuses and error bodies."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ingest.errors import (
    BatchTooLarge,
    IngestError,
    MalformedBatch,
    RetryLater,
    UnsupportedMediaType,
)
from storage.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

_STATUS: dict[type[IngestError], int] = {
    MalformedBatch: 400,
    BatchTooLarge: 413,
    UnsupportedMediaType: 415,
}

# Suggested wait when the database cannot authenticate a key that is not cached.
_DATABASE_RETRY_AFTER_S = 5


class Unauthorized(Exception):
    """The request carries no API key, or one that is unknown or revoked."""


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


async def _ingest_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IngestError)
    if isinstance(exc, RetryLater):
        status = 429 if exc.code == "rate_limited" else 503
        return error_response(status, exc.code, str(exc), exc.retry_after_s)
    return error_response(_STATUS.get(type(exc), 400), exc.code, str(exc))


async def _unauthorized(_: Request, exc: Exception) -> JSONResponse:
    return error_response(401, "unauthorized", str(exc))


async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return error_response(
        503, "database_unavailable", "cannot verify the API key now", _DATABASE_RETRY_AFTER_S
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every expected error to its status; anything else stays a logged 500."""
    app.add_exception_handler(IngestError, _ingest_error)
    app.add_exception_handler(Unauthorized, _unauthorized)
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)
