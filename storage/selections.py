"""Running the query compiler's selection statements and unpacking their points."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from storage.errors import StatementTimeout, StorageError, first_line


@dataclass(frozen=True)
class SelectedSeries:
    """One series of a selection: its metric, labels and points in time order."""

    metric: str
    labels: Mapping[str, str]
    times_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


def fetch_selection(
    conn: psycopg.Connection, statement: str, params: Mapping[str, Any], timeout: timedelta
) -> list[SelectedSeries]:
    """Run a compiled selection in a read-only transaction bounded by `timeout`.

    Times and values arrive as packed big-endian binary strings (see
    querylang/compiler.py), so unpacking is two `frombuffer` calls per series
    (and a sort when they came unordered); NaN payloads (stale markers) survive
    bit for bit."""
    selected = []
    for metric, labels, times, values in fetch_rows(conn, statement, params, timeout):
        times_us, unpacked = _unpacked("tf", (times, values))
        selected.append(SelectedSeries(metric, labels, times_us, unpacked))
    return selected


_POSTGRES_EPOCH_US = 946_684_800_000_000
"""2000-01-01 in Unix µs: `timestamptz_send` counts from there."""


def _unpacked(kinds: str, packed: Sequence[bytes]) -> list[npt.NDArray[Any]]:
    """Packed columns as arrays ("t": timestamptz_send, as Unix µs; "f": float8send),
    all in the order of the first (sorted when they came unordered)."""
    columns = [
        np.frombuffer(data, dtype=">i8").astype(np.int64) + _POSTGRES_EPOCH_US
        if kind == "t"
        else np.frombuffer(data, dtype=">f8").astype(np.float64)
        for kind, data in zip(kinds, packed, strict=True)
    ]
    if len(columns[0]) > 1 and (np.diff(columns[0]) < 0).any():
        order = np.argsort(columns[0], kind="stable")
        columns = [column[order] for column in columns]
    return columns


@dataclass(frozen=True)
class SelectedColumns:
    """One series of a rollup selection: its metric, labels and one array per
    selected column, all ordered by the first (the bucket)."""

    metric: str
    labels: Mapping[str, str]
    columns: tuple[npt.NDArray[Any], ...]


def fetch_columns(
    conn: psycopg.Connection,
    statement: str,
    params: Mapping[str, Any],
    timeout: timedelta,
    kinds: str,
) -> list[SelectedColumns]:
    """Run a compiled rollup selection: after metric and labels, one packed binary
    string per column, `kinds[i]` saying how to unpack column i ("t": timestamptz_send
    as Unix µs, "f": float8send)."""
    return [
        SelectedColumns(metric, labels, tuple(_unpacked(kinds, packed)))
        for metric, labels, *packed in fetch_rows(conn, statement, params, timeout)
    ]


def fetch_rows(
    conn: psycopg.Connection, statement: str, params: Mapping[str, Any], timeout: timedelta
) -> list[tuple[Any, ...]]:
    """All rows of one compiled statement, run read-only under a statement timeout."""
    milliseconds = max(1, int(timeout.total_seconds() * 1000))
    try:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute(
                sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{milliseconds}ms"))
            )
            cursor.execute(statement, params)
            return cursor.fetchall()
    except psycopg.errors.QueryCanceled as exc:
        raise StatementTimeout(f"query cancelled after {timeout.total_seconds():g} s") from exc
    except (psycopg.DataError, psycopg.ProgrammingError) as exc:
        raise StorageError(f"selection refused: {first_line(exc)}") from exc
