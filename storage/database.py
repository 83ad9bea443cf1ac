"""Connections to PostgreSQL, with driver failures translated into storage errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.errors import DatabaseUnavailable, StorageError, first_line
from storage.priority import lower_backend_priority


def redact(url: str) -> str:
    """The URL without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str) -> psycopg.Connection:
    """Open an autocommit connection (transactions are explicit), or raise DatabaseUnavailable."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to {redact(url)}: {first_line(exc)} "
            "(start the local services with `vigil services up`, or set VIGIL_DATABASE_URL)"
        ) from exc


def ensure_database(url: str) -> None:
    """Create the database the URL names if it does not exist (on a server we administer)."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with connect(admin_url) as conn:
        try:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return  # created concurrently by another `vigil services up`
        except psycopg.Error as exc:
            raise StorageError(f"cannot create database {name!r}: {first_line(exc)}") from exc


class Pool:
    """A small pool of autocommit connections for request handlers, opened lazily."""

    def __init__(self, url: str, max_size: int = 8, nice: int = 0) -> None:
        """`nice` > 0 lowers each backend's CPU priority (storage/priority.py)."""
        self._pool = ConnectionPool(
            url,
            min_size=0,
            max_size=max_size,
            kwargs={"autocommit": True, "connect_timeout": 5},
            configure=(lambda conn: lower_backend_priority(conn, nice)) if nice > 0 else None,
            open=True,
            timeout=10,
        )
        self._url = url

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection for the duration of the block, or raise DatabaseUnavailable."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise DatabaseUnavailable(
                f"cannot reach {redact(self._url)}: {first_line(exc)}"
            ) from exc

    def close(self) -> None:
        """Close every connection."""
        self._pool.close()
