"""The one place domain errors become HTTP statuses and error codes (their bodies are
api/responses.py's)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.responses import error_response, prometheus_error
from ingest.errors import (
    BatchTooLarge,
    IngestError,
    MalformedBatch,
    RetryLater,
    UnsupportedMediaType,
)
from querylang.errors import QueryError, SqlRejected
from storage.errors import DatabaseUnavailable
from storage.retention import InvalidRetentionOverride, RetentionOverrideNotFound

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


async def _ingest_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IngestError)
    if isinstance(exc, RetryLater):
        status = 429 if exc.code == "rate_limited" else 503
        return error_response(status, exc.code, str(exc), exc.retry_after_s)
    return error_response(_STATUS.get(type(exc), 400), exc.code, str(exc))


async def _unauthorized(_: Request, exc: Exception) -> JSONResponse:
    return error_response(401, "unauthorized", str(exc))


_QUERY_STATUS = {"bad_data": 400, "execution": 422, "timeout": 503}
_INGEST_PATHS = frozenset({"/v1/metrics/ingest", "/api/v1/write"})


def _is_prometheus_query(path: str) -> bool:
    """Paths of Prometheus's query API, whose clients expect its error envelope."""
    return path.startswith("/api/v1/") and path not in _INGEST_PATHS


async def _query_error(request: Request, exc: Exception) -> JSONResponse:
    """Query errors: Prometheus's envelope on its API paths, Vigil's body elsewhere."""
    assert isinstance(exc, QueryError)
    status = _QUERY_STATUS.get(exc.error_type, 422)
    if _is_prometheus_query(request.url.path):
        return prometheus_error(status, exc.error_type, str(exc))
    # A refused statement has its own code, so clients tell it from a malformed request.
    code = "sql_rejected" if isinstance(exc, SqlRejected) else exc.error_type
    return error_response(status, code, str(exc))


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    if _is_prometheus_query(request.url.path):
        return prometheus_error(503, "unavailable", "the database is unreachable")
    message = (
        "cannot verify the API key now"
        if request.url.path in _INGEST_PATHS
        else "the database is unreachable"
    )
    return error_response(503, "database_unavailable", message, _DATABASE_RETRY_AFTER_S)


async def _invalid_retention(_: Request, exc: Exception) -> JSONResponse:
    return error_response(400, "invalid_retention", str(exc))


async def _retention_not_found(_: Request, exc: Exception) -> JSONResponse:
    return error_response(404, "not_found", str(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Map every expected error to its status; anything else stays a logged 500."""
    app.add_exception_handler(IngestError, _ingest_error)
    app.add_exception_handler(Unauthorized, _unauthorized)
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)
    app.add_exception_handler(QueryError, _query_error)
    app.add_exception_handler(InvalidRetentionOverride, _invalid_retention)
    app.add_exception_handler(RetentionOverrideNotFound, _retention_not_found)
