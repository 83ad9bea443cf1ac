"""Typed query errors; `api/` maps each to its HTTP status and Prometheus `errorType`."""

from __future__ import annotations


class QueryError(Exception):
    """Root of every error the query path raises on purpose."""

    error_type = "execution"


class ParseError(QueryError):
    """The query text is not in the supported PromQL subset, or is ill-typed.

    `position` is the 0-based character offset the problem was found at.
    """

    error_type = "bad_data"

    def __init__(self, message: str, position: int, query: str) -> None:
        super().__init__(f"{message} (at char {position + 1})")
        self.detail = message
        self.position = position
        self.query = query


class BadRequest(QueryError):
    """A request parameter (time, step, range, match[]) is invalid."""

    error_type = "bad_data"


class EvaluationError(QueryError):
    """The query is valid but its data makes it fail, as in Prometheus
    (duplicate series in a match group, a label set appearing twice)."""

    error_type = "execution"


class QueryLimitExceeded(QueryError):
    """The query would exceed a configured limit (series, points, samples)."""

    error_type = "execution"


class QueryTimeout(QueryError):
    """The query ran longer than its time limit and was cancelled."""

    error_type = "timeout"


class SqlRejected(QueryError):
    """A raw SQL statement is not a single read-only SELECT over the documented views."""

    error_type = "bad_data"
