"""The SQL console: a tenant's read-only statement run by the database as that tenant.

The statement runs on a connection of the `vigil_sql_reader` role (its own pool), in
a READ ONLY transaction with a statement timeout, through a server-side cursor:
`DECLARE ... CURSOR FOR` accepts only a SELECT or VALUES, and psycopg declares it with
the extended protocol, which refuses a second statement. Rows are filtered to the
tenant by row-level security on a signed claim (sql/0005_sql_reader.sql), so the
console never edits the statement. It does not check the statement either: that is
querylang/sql_guard.py's job, and tests run raw statements here on purpose.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.database import connect, redact
from storage.errors import DatabaseUnavailable, StorageError, first_line
from storage.queries import query

READER_ROLE = "vigil_sql_reader"
"""The role tenants' statements run as (created by sql/0005_sql_reader.sql)."""

_CURSOR = "vigil_sql"


class SqlTimeout(StorageError):
    """The statement ran past its timeout, or no reader connection became free in time."""


class SqlInvalid(StorageError):
    """The database refused the statement: syntax, unknown name, privilege, read-only."""


class SqlDataError(StorageError):
    """The statement failed on its data (division by zero, a bad cast …)."""


class SqlResourceLimit(StorageError):
    """The statement needed more memory, temporary disk or size than it may use."""


@dataclass(frozen=True)
class SqlColumn:
    """A result column: its name and PostgreSQL type name (int8, timestamptz, jsonb …)."""

    name: str
    type: str


@dataclass(frozen=True)
class SqlRows:
    """A statement's first rows; `truncated` means more rows existed than were fetched."""

    columns: list[SqlColumn]
    rows: list[tuple[object, ...]]
    truncated: bool


def reader_url(owner_url: str) -> str:
    """The owner's URL with the reader role as its user and no password.

    The local cluster trusts loopback connections; a server that wants a password for
    the reader needs one set on the role and in this URL.
    """
    parts = urlsplit(owner_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{READER_ROLE}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class SqlConsole:
    """Runs tenants' statements as the reader role, at most `row_limit` rows each."""

    def __init__(
        self,
        owner_url: str,
        reader: str,
        *,
        row_limit: int,
        timeout: timedelta,
        max_connections: int = 4,
        wait: timedelta = timedelta(seconds=10),
    ) -> None:
        self._owner_url = owner_url
        self._reader = reader
        self._row_limit = row_limit
        self._timeout_ms = max(1, int(timeout / timedelta(milliseconds=1)))
        self._wait = wait
        self._key: bytes | None = None
        self._key_lock = threading.Lock()
        self._pool = ConnectionPool(
            reader,
            min_size=0,
            max_size=max_connections,
            # No prepared statements: one tenant's statement text must not stay on a
            # connection the next tenant uses (pg_prepared_statements).
            kwargs={
                "autocommit": True,
                "connect_timeout": 5,
                "prepare_threshold": None,
                # Results in UTC, intervals as ISO 8601 durations ("P1DT2H").
                "options": "-c TimeZone=UTC -c IntervalStyle=iso_8601",
            },
            configure=_configure,
            reset=_reset,
            open=True,
            timeout=wait.total_seconds(),
        )

    def run(self, tenant_id: UUID, statement: str) -> SqlRows:
        """The statement's rows as the tenant may see them.

        Raises SqlTimeout, SqlInvalid, SqlDataError or SqlResourceLimit for the
        statement's own failures, DatabaseUnavailable when the server cannot be reached.
        """
        claim = self._claim(tenant_id)
        with self._connection() as conn:
            try:
                with conn.transaction():
                    conn.execute(
                        query("begin_sql_console"),
                        {"claim": claim, "timeout_ms": str(self._timeout_ms)},
                    )
                    with conn.cursor(name=_CURSOR) as cursor:
                        cursor.execute(statement)
                        rows = cursor.fetchmany(self._row_limit + 1)
                        columns = [
                            SqlColumn(column.name, column.type_display)
                            for column in cursor.description or ()
                        ]
            except psycopg.Error as exc:
                raise _translated(exc) from exc
        return SqlRows(
            columns=columns,
            rows=rows[: self._row_limit],
            truncated=len(rows) > self._row_limit,
        )

    def close(self) -> None:
        """Close every reader connection."""
        self._pool.close()

    def _claim(self, tenant_id: UUID) -> str:
        """`<uuid>:<hex sha256(key || uuid)>`, which vigil.sql_tenant() verifies."""
        tenant = str(UUID(str(tenant_id)))  # canonical form, as uuid::text prints it
        digest = hashlib.sha256(self._tenant_key() + tenant.encode()).hexdigest()
        return f"{tenant}:{digest}"

    def _tenant_key(self) -> bytes:
        """The database's claim key, read once as the owner (the reader cannot read it)."""
        with self._key_lock:
            if self._key is None:
                with connect(self._owner_url) as conn:
                    try:
                        row = conn.execute(query("select_sql_tenant_key")).fetchone()
                    except psycopg.Error as exc:
                        raise StorageError(
                            f"cannot read the SQL tenant key: {first_line(exc)} "
                            "(run `vigil migrate`)"
                        ) from exc
                if row is None:
                    raise StorageError("the SQL tenant key is missing: run `vigil migrate`")
                self._key = bytes(row[0])
            return self._key

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise SqlTimeout(
                f"no connection for SQL statements became free within "
                f"{self._wait.total_seconds():g} s: too many are running, try again"
            ) from exc
        except psycopg.OperationalError as exc:  # connecting failed
            raise DatabaseUnavailable(
                f"cannot reach {redact(self._reader)}: {first_line(exc)}"
            ) from exc


def _configure(conn: psycopg.Connection) -> None:
    """Session set-up of a new reader connection: read-only transactions, loaders."""
    conn.read_only = True
    adapters = conn.adapters
    adapters.register_loader("timestamptz", _TimestamptzLoader)
    adapters.register_loader("timestamp", _TimestampLoader)
    adapters.register_loader("date", _DateLoader)
    # Intervals stay ISO 8601 text: months do not fit a timedelta.
    adapters.register_loader("interval", TextLoader)


def _reset(conn: psycopg.Connection) -> None:
    """Forget everything a statement left on the session before the next tenant's."""
    conn.execute("DISCARD ALL")


_INFINITIES = (b"infinity", b"-infinity")


class _Infinities(Loader):
    """A date/time loader that returns PostgreSQL's infinities as the strings it prints
    (psycopg refuses them: they fit no datetime)."""

    def load(self, data: Buffer) -> Any:
        if bytes(data) in _INFINITIES:
            return bytes(data).decode()
        # The psycopg loader after this mixin in each class's MRO implements it.
        return super().load(data)  # type: ignore[safe-super]


class _TimestamptzLoader(_Infinities, TimestamptzLoader):
    """timestamptz, infinities included."""


class _TimestampLoader(_Infinities, TimestampLoader):
    """timestamp, infinities included."""


class _DateLoader(_Infinities, DateLoader):
    """date, infinities included."""


# SQLSTATE classes of the statement's own failures: syntax, access and name errors,
# transaction state (a write in a read-only transaction), unsupported features.
_INVALID_CLASSES = ("42", "25", "0A", "2B", "34", "3F")
_RESOURCE_CLASSES = ("53", "54")


def _translated(exc: psycopg.Error) -> StorageError:
    """The console's error for a driver error raised while running a statement."""
    message = first_line(exc)
    state = exc.sqlstate or ""
    if state == "57014":  # query_canceled: the statement timeout
        return SqlTimeout(f"the statement ran longer than its time limit ({message})")
    if state.startswith(("08", "57P")) or isinstance(exc, psycopg.InterfaceError):
        return DatabaseUnavailable(f"the SQL connection failed: {message}")
    if state.startswith(_INVALID_CLASSES):
        return SqlInvalid(message)
    if state.startswith(_RESOURCE_CLASSES):
        return SqlResourceLimit(message)
    # Data exceptions (22), cardinality (21), and values the driver cannot load.
    return SqlDataError(message)
